package lossplot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestWritePNG(t *testing.T) {
	s := Series{Name: "loss"}
	for i := 0; i < 50; i++ {
		s.X = append(s.X, float64(i+1))
		s.Y = append(s.Y, 3/float64(i+1))
	}
	p := filepath.Join(t.TempDir(), "loss.png")
	if err := WritePNG(p, []Series{s}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Fatalf("image %v", b)
	}
	// The curve starts at the left axis, high up (the largest loss), and
	// ends low at the right: look for the series colour there.
	found := func(x, y0, y1 int) bool {
		for y := y0; y < y1; y++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if c := palette[0]; uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(b>>8) == c.B {
				return true
			}
		}
		return false
	}
	if !found(left, top, top+height/4) {
		t.Error("no curve near the top of the left axis")
	}
	if !found(width-right, height-bottom-height/4, height-bottom) {
		t.Error("no curve near the bottom at the right end")
	}
	if _, err := Draw([]Series{{Name: "empty"}}); err == nil {
		t.Error("empty series plotted")
	}
}
