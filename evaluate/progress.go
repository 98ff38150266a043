package evaluate

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress shows how far a loop over examples has got: in place on a
// terminal, every few seconds otherwise. A nil *progress shows nothing.
type progress struct {
	w           io.Writer
	name        string
	n, i        int
	start, last time.Time
	tty         bool
}

func newProgress(w io.Writer, name string, n int) *progress {
	if w == nil {
		return nil
	}
	c := &progress{w: w, name: name, n: n, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		st, _ := f.Stat()
		c.tty = st != nil && st.Mode()&os.ModeCharDevice != 0
	}
	return c
}

func (c *progress) tick() {
	if c == nil {
		return
	}
	c.i++
	now := time.Now()
	if now.Sub(c.last) < time.Second || (!c.tty && now.Sub(c.last) < 10*time.Second) {
		return
	}
	c.last = now
	eta := time.Duration(float64(now.Sub(c.start)) / float64(c.i) * float64(c.n-c.i+1)).Round(time.Second)
	line := fmt.Sprintf("%s: example %d/%d, ETA %s", c.name, c.i, c.n, eta)
	if c.tty {
		fmt.Fprintf(c.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(c.w, line)
	}
}

func (c *progress) done() {
	if c == nil {
		return
	}
	if c.tty && !c.last.IsZero() {
		fmt.Fprint(c.w, "\r\033[K")
	}
}
