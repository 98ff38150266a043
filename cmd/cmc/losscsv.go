package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/internal/lossplot"
)

var lossHeader = []string{"step", "epoch", "loss", "forget_ce", "retain_ce", "lr", "grad_norm", "tokens", "template_ms", "delta_ms", "wall_ms"}

// writeLossCSV rewrites the whole history, atomically, so that the file
// always matches a checkpoint.
func writeLossCSV(path string, h []control.Step) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(lossHeader)
	for _, s := range h {
		w.Write([]string{
			strconv.Itoa(s.Step), strconv.Itoa(s.Epoch),
			strconv.FormatFloat(s.Loss, 'g', 8, 64), strconv.FormatFloat(s.ForgetCE, 'g', 8, 64), strconv.FormatFloat(s.RetainCE, 'g', 8, 64),
			strconv.FormatFloat(s.LR, 'g', 6, 64), strconv.FormatFloat(s.GradNorm, 'g', 6, 64), strconv.Itoa(s.Tokens),
			strconv.FormatInt(s.TemplateTime.Milliseconds(), 10), strconv.FormatInt(s.DeltaTime.Milliseconds(), 10),
			strconv.FormatInt(s.Wall.Milliseconds(), 10),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes())
}

// readLossCSV reads the history written by an earlier run, up to step
// upTo (the resumed checkpoint's step).
func readLossCSV(path string, upTo int) ([]control.Step, error) {
	if upTo == 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 || len(rows[0]) != len(lossHeader) {
		return nil, fmt.Errorf("%s: not a cmc loss file (header %v)", path, lossHeader)
	}
	var h []control.Step
	for i, r := range rows[1:] {
		num := func(j int) float64 {
			v, e := strconv.ParseFloat(r[j], 64)
			if e != nil && err == nil {
				err = fmt.Errorf("%s:%d: column %s: %w", path, i+2, lossHeader[j], e)
			}
			return v
		}
		s := control.Step{Step: int(num(0)), Epoch: int(num(1)), Loss: num(2), ForgetCE: num(3), RetainCE: num(4),
			LR: num(5), GradNorm: num(6), Tokens: int(num(7)),
			TemplateTime: time.Duration(num(8)) * time.Millisecond, DeltaTime: time.Duration(num(9)) * time.Millisecond,
			Wall: time.Duration(num(10)) * time.Millisecond}
		if err != nil {
			return nil, err
		}
		if s.Step > upTo {
			break
		}
		h = append(h, s)
	}
	if len(h) != upTo {
		return h, errors.New("the loss file does not reach the checkpoint's step")
	}
	return h, nil
}

func lossSeries(h []control.Step) []lossplot.Series {
	loss := lossplot.Series{Name: "loss"}
	forget := lossplot.Series{Name: "forget CE"}
	retain := lossplot.Series{Name: "retain CE"}
	for _, s := range h {
		loss.X = append(loss.X, float64(s.Step))
		loss.Y = append(loss.Y, s.Loss)
		if s.ForgetCE != 0 || s.RetainCE != 0 {
			forget.X, forget.Y = append(forget.X, float64(s.Step)), append(forget.Y, s.ForgetCE)
			retain.X, retain.Y = append(retain.X, float64(s.Step)), append(retain.Y, s.RetainCE)
		}
	}
	if len(forget.X) > 0 {
		return []lossplot.Series{forget, retain}
	}
	return []lossplot.Series{loss}
}
