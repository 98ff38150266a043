package lossplot

import (
	"image/png"
	"math"
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
	if err := WritePNG(p, "step", []Series{s}); err != nil {
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
	if _, err := Draw("step", []Series{{Name: "empty"}}); err == nil {
		t.Error("empty series plotted")
	}
}

// TestDrawNonFinite: a diverged run's NaN and infinite losses used to send
// the line drawing into an endless loop. They are left out of the curve;
// the finite points are still drawn.
func TestDrawNonFinite(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	s := Series{Name: "loss", X: []float64{1, 2, 3, 4, 5, 6}, Y: []float64{3, 2.5, nan, inf, -inf, 2}}
	img, err := Draw("step", []Series{s})
	if err != nil {
		t.Fatal(err)
	}
	coloured := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.RGBAAt(x, y) == palette[0] {
				coloured++
			}
		}
	}
	if coloured < 50 {
		t.Errorf("%d pixels of the curve, want the segment from step 1 to 2", coloured)
	}
	for _, bad := range []Series{
		{Name: "all NaN", X: []float64{1, 2}, Y: []float64{nan, nan}},
		{Name: "too wide", X: []float64{1, 2}, Y: []float64{-1e308, 1e308}},
		{Name: "NaN steps", X: []float64{nan, inf}, Y: []float64{1, 2}},
	} {
		if _, err := Draw("step", []Series{bad}); err == nil {
			t.Errorf("%s: plotted", bad.Name)
		}
	}
}
