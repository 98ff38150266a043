// Command plot draws the sweep curves of RESULTS.md as a PNG with internal/lossplot.
//
//	go run ./scripts/plot [-x LABEL] OUT.png NAME=x1:y1,x2:y2,... [NAME=...]
//
// Each argument after the file is one series: its legend name, then its
// points. -x names the x axis (default "alpha": the sweeps of RESULTS.md).
// scripts/reproduce_report.py writes the arguments from a run's JSON.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cmc-dev/cmc/internal/lossplot"
)

func main() {
	xLabel := flag.String("x", "alpha", "the x axis's name")
	flag.Parse()
	if err := run(*xLabel, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(xLabel string, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: plot [-x LABEL] OUT.png NAME=x:y,x:y ...")
	}
	var series []lossplot.Series
	for _, a := range args[1:] {
		s, err := parseSeries(a)
		if err != nil {
			return err
		}
		series = append(series, s)
	}
	return lossplot.WritePNG(args[0], xLabel, series)
}

// parseSeries reads NAME=x1:y1,x2:y2,...
func parseSeries(a string) (lossplot.Series, error) {
	name, pts, ok := strings.Cut(a, "=")
	if !ok {
		return lossplot.Series{}, fmt.Errorf("series %q: want NAME=x:y,x:y", a)
	}
	s := lossplot.Series{Name: name}
	for _, p := range strings.Split(pts, ",") {
		xs, ys, ok := strings.Cut(p, ":")
		if !ok {
			return s, fmt.Errorf("series %q: point %q is not x:y", name, p)
		}
		x, err := strconv.ParseFloat(xs, 64)
		if err != nil {
			return s, fmt.Errorf("series %q: point %q: %w", name, p, err)
		}
		y, err := strconv.ParseFloat(ys, 64)
		if err != nil {
			return s, fmt.Errorf("series %q: point %q: %w", name, p, err)
		}
		s.X = append(s.X, x)
		s.Y = append(s.Y, y)
	}
	return s, nil
}
