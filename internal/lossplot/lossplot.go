// Package lossplot draws training curves as a PNG: a small, dependency-light
// chart (axes, ticks, one line per series, a legend) so that `cmc train`
// leaves a picture of its loss beside the CSV.
package lossplot

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/cmc-dev/cmc/internal/atomicfile"
)

// Series is one named curve.
type Series struct {
	Name string
	X, Y []float64
}

const (
	width, height = 800, 480
	left, right   = 70, 20
	top, bottom   = 30, 50
)

var palette = []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255}}

// WritePNG draws the series against an x axis named xLabel and writes the
// picture to path atomically.
func WritePNG(path, xLabel string, series []Series) error {
	img, err := Draw(xLabel, series)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return atomicfile.Write(path, buf.Bytes())
}

// Draw renders the series on one pair of axes, the x axis named xLabel.
func Draw(xLabel string, series []Series) (*image.RGBA, error) {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q has %d x and %d y values", s.Name, len(s.X), len(s.Y))
		}
		for i := range s.X {
			if !finite(s.X[i], s.Y[i]) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if xmin > xmax {
		return nil, errors.New("nothing to plot")
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymax, ymin = ymax+0.5, ymin-0.5
	}
	pad := (ymax - ymin) * 0.05
	ymin, ymax = ymin-pad, ymax+pad
	if math.IsInf(ymax-ymin, 0) || math.IsInf(xmax-xmin, 0) {
		// Finite values whose span overflows (±1e308) would put every
		// point at NaN pixels.
		return nil, fmt.Errorf("values from %g to %g are too far apart to plot", ymin, ymax)
	}

	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	px := func(x float64) int { return left + int((x-xmin)/(xmax-xmin)*float64(width-left-right)) }
	py := func(y float64) int { return height - bottom - int((y-ymin)/(ymax-ymin)*float64(height-top-bottom)) }

	grey := color.RGBA{200, 200, 200, 255}
	black := color.RGBA{0, 0, 0, 255}
	// Steps are whole numbers; a short x range (a sweep of alpha from 0
	// to 2) needs decimals, or its ticks would read 0 0 1 1 2 2.
	xTick := "%.0f"
	if xmax-xmin < 10 {
		xTick = "%.2f"
	}
	for i := 0; i <= 5; i++ {
		y := ymin + (ymax-ymin)*float64(i)/5
		line(img, left, py(y), width-right, py(y), grey)
		text(img, 4, py(y)+4, fmt.Sprintf("%7.3f", y), black)
		x := xmin + (xmax-xmin)*float64(i)/5
		text(img, px(x)-10, height-bottom+18, fmt.Sprintf(xTick, x), black)
	}
	line(img, left, top, left, height-bottom, black)
	line(img, left, height-bottom, width-right, height-bottom, black)
	text(img, width/2-15, height-10, xLabel, black)

	for k, s := range series {
		c := palette[k%len(palette)]
		// A NaN or infinite point (a diverged step) breaks the curve: its
		// pixel would be garbage, and a line to it endless.
		for i := 1; i < len(s.X); i++ {
			if finite(s.X[i-1], s.Y[i-1]) && finite(s.X[i], s.Y[i]) {
				line(img, px(s.X[i-1]), py(s.Y[i-1]), px(s.X[i]), py(s.Y[i]), c)
			}
		}
		text(img, width-right-140, top+14*(k+1), "-- "+s.Name, c)
	}
	return img, nil
}

func finite(x, y float64) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0) && !math.IsNaN(y) && !math.IsInf(y, 0)
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
