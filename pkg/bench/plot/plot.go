// Package plot draws line charts to PNG files for the benchmarks
// (gpuslice-bench openb writes docs/openb-default.png with it), with
// gonum.org/v1/plot: anti-aliased lines, markers on short series, a legend
// and axes with round tick steps.
package plot

import (
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Point is one data point.
type Point struct{ X, Y float64 }

// Series is a named sequence of points drawn as one polyline. The points
// need not be sorted: they are drawn in order of increasing X. An unnamed
// series has no legend entry.
type Series struct {
	Name   string
	Points []Point
}

// Chart describes a line chart.
//
// Width and Height are in pixels; a zero value means the default of
// 1000x640. XMin/XMax and YMin/YMax fix an axis range: when both values of a
// pair are zero the range is chosen automatically (rounded outwards to nice
// values, and for Y extended to include 0 when the data lie near it; with a
// fixed X range, from the points inside it, so that a zoom rescales Y);
// otherwise Min must be less than Max and the axis spans exactly [Min, Max],
// with data outside it clipped.
type Chart struct {
	Title, XLabel, YLabel  string
	Series                 []Series
	Width, Height          int
	XMin, XMax, YMin, YMax float64
}

const (
	defaultWidth  = 1000
	defaultHeight = 640
	minWidth      = 240
	minHeight     = 160
	markerMax     = 40 // series with at most this many points get markers
	maxTicks      = 1000
	dpi           = 96
)

// Fixed palettes. Series i uses palette[i%len(palette)] and, once the
// colours run out, dashes[(i/len(palette))%len(dashes)] as its dash pattern
// (on/off lengths in points; nil is solid).
var (
	palette = [...]color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, // blue
		{0xff, 0x7f, 0x0e, 0xff}, // orange
		{0x2c, 0xa0, 0x2c, 0xff}, // green
		{0xd6, 0x27, 0x28, 0xff}, // red
		{0x94, 0x67, 0xbd, 0xff}, // purple
		{0x8c, 0x56, 0x4b, 0xff}, // brown
		{0xe3, 0x77, 0xc2, 0xff}, // pink
		{0x7f, 0x7f, 0x7f, 0xff}, // grey
		{0xbc, 0xbd, 0x22, 0xff}, // olive
		{0x17, 0xbe, 0xcf, 0xff}, // cyan
	}
	dashes = [...][]vg.Length{nil, {vg.Points(7), vg.Points(4)}, {vg.Points(2), vg.Points(3)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}

	backgroundColor = color.RGBA{0xff, 0xff, 0xff, 0xff}
	gridColor       = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// Render draws the chart. It fails if there are no series, a series has no
// points, a value or fixed range bound is NaN or infinite, a fixed range is
// empty, or the image is too small (under 240x160 pixels).
func (c *Chart) Render() (image.Image, error) {
	img, _, err := c.render()
	return img, err
}

// render draws the chart and also returns the data area in pixels.
func (c *Chart) render() (image.Image, image.Rectangle, error) {
	w, h := c.Width, c.Height
	if w == 0 {
		w = defaultWidth
	}
	if h == 0 {
		h = defaultHeight
	}
	if w < minWidth || h < minHeight {
		return nil, image.Rectangle{}, fmt.Errorf("plot: image size %dx%d is below the minimum %dx%d", w, h, minWidth, minHeight)
	}
	series, err := c.sortedSeries()
	if err != nil {
		return nil, image.Rectangle{}, err
	}
	xlo, xhi, _, _ := bounds(series)
	xAx, err := makeAxis(xlo, xhi, c.XMin, c.XMax, false, max(2, min(10, w/100)))
	if err != nil {
		return nil, image.Rectangle{}, fmt.Errorf("plot: x axis: %w", err)
	}
	// Y is scaled to the points the X range shows.
	_, _, ylo, yhi := bounds(series)
	if c.XMin != 0 || c.XMax != 0 {
		if lo, hi, ok := yWithin(series, xAx.min, xAx.max); ok {
			ylo, yhi = lo, hi
		}
	}
	yAx, err := makeAxis(ylo, yhi, c.YMin, c.YMax, true, max(3, min(10, h/60)))
	if err != nil {
		return nil, image.Rectangle{}, fmt.Errorf("plot: y axis: %w", err)
	}

	p := gplot.New()
	p.Title.Text = c.Title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text, p.Y.Label.Text = c.XLabel, c.YLabel
	p.X.Tick.Marker, p.Y.Tick.Marker = xAx, yAx
	p.X.Padding, p.Y.Padding = 0, 0
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = gridColor, gridColor
	p.Add(grid)
	// The legend goes in a column right of the plot, where it hides no data.
	legend := gplot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font.Size = vg.Points(10)
	legend.Padding = vg.Points(4)
	for i, s := range series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j] = plotter.XY{X: clampTo(pt.X, xAx), Y: clampTo(pt.Y, yAx)}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, image.Rectangle{}, fmt.Errorf("plot: series %d (%q): %w", i, s.Name, err)
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(2)
		line.Dashes = dashes[(i/len(palette))%len(dashes)]
		p.Add(line)
		if len(s.Points) <= markerMax {
			pts, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, image.Rectangle{}, err
			}
			pts.GlyphStyle.Color = line.Color
			pts.GlyphStyle.Shape = draw.CircleGlyph{}
			pts.GlyphStyle.Radius = vg.Points(2.5)
			p.Add(pts)
			if s.Name != "" {
				legend.Add(s.Name, line, pts)
			}
		} else if s.Name != "" {
			legend.Add(s.Name, line)
		}
	}

	// After the plotters: Add widens the axes to their data.
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = xAx.min, xAx.max, yAx.min, yAx.max

	size := func(px int) vg.Length { return vg.Length(px) * vg.Inch / dpi }
	canvas := vgimg.NewWith(vgimg.UseWH(size(w), size(h)), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(backgroundColor))
	dc := draw.New(canvas)
	if legendW := legendWidth(&legend, series); legendW > 0 {
		// At most a third of the image; longer names run off its edge.
		legendW = min(legendW, dc.Size().X/3)
		right := dc
		right.Min.X = dc.Max.X - legendW
		right.Max.Y -= vg.Points(24) // level with the top of the data
		dc.Max.X -= legendW + vg.Points(8)
		legend.Draw(right)
	}
	area := p.DataCanvas(dc)
	p.Draw(dc)
	img := canvas.Image()
	// vg's origin is at the bottom left; the image's at the top left.
	px := func(l vg.Length) int { return int(math.Round(float64(l) * dpi / float64(vg.Inch))) }
	rect := image.Rect(px(area.Min.X), h-px(area.Max.Y), px(area.Max.X), h-px(area.Min.Y))
	return img, rect, nil
}

// clampTo keeps a value within a thousand axis lengths of the axis, so that
// far-away points (1e300) clip to the data area without overflowing; the
// slope error inside the area is below a pixel.
func clampTo(v float64, a axis) float64 {
	span := 1000 * (a.max - a.min)
	return math.Max(a.min-span, math.Min(a.max+span, v))
}

// legendWidth is the width of the legend column; 0 when no series is named.
func legendWidth(l *gplot.Legend, series []Series) vg.Length {
	var w vg.Length
	for _, s := range series {
		if s.Name != "" {
			w = max(w, l.TextStyle.Width(s.Name))
		}
	}
	if w == 0 {
		return 0
	}
	return w + l.ThumbnailWidth + vg.Points(14)
}

// yWithin is the Y extent of the points with X in [lo, hi].
func yWithin(series []Series, lo, hi float64) (ylo, yhi float64, ok bool) {
	ylo, yhi = math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.Points {
			if p.X >= lo && p.X <= hi {
				ylo, yhi, ok = math.Min(ylo, p.Y), math.Max(yhi, p.Y), true
			}
		}
	}
	return ylo, yhi, ok
}

// WritePNG renders the chart and writes it to path as a PNG file.
func (c *Chart) WritePNG(path string) error {
	img, err := c.Render()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("plot: encoding %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// sortedSeries validates the chart's data and returns copies of the series
// with their points sorted by X; the caller's slices are left untouched.
func (c *Chart) sortedSeries() ([]Series, error) {
	if len(c.Series) == 0 {
		return nil, errors.New("plot: chart has no series")
	}
	for _, v := range []float64{c.XMin, c.XMax, c.YMin, c.YMax} {
		if !finite(v) {
			return nil, errors.New("plot: axis range bound is NaN or infinite")
		}
	}
	out := make([]Series, len(c.Series))
	for i, s := range c.Series {
		if len(s.Points) == 0 {
			return nil, fmt.Errorf("plot: series %d (%q) has no points", i, s.Name)
		}
		for _, p := range s.Points {
			if !finite(p.X) || !finite(p.Y) {
				return nil, fmt.Errorf("plot: series %d (%q) has a NaN or infinite value", i, s.Name)
			}
		}
		pts := slices.Clone(s.Points)
		slices.SortStableFunc(pts, func(a, b Point) int { return cmp.Compare(a.X, b.X) })
		out[i] = Series{Name: s.Name, Points: pts}
	}
	return out, nil
}

// bounds returns the data extent over all series.
func bounds(series []Series) (xlo, xhi, ylo, yhi float64) {
	xlo, ylo = math.Inf(1), math.Inf(1)
	xhi, yhi = math.Inf(-1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.Points {
			xlo, xhi = math.Min(xlo, p.X), math.Max(xhi, p.X)
			ylo, yhi = math.Min(ylo, p.Y), math.Max(yhi, p.Y)
		}
	}
	return xlo, xhi, ylo, yhi
}

// axis is a scaled axis: its displayed range and tick positions.
type axis struct {
	min, max, step float64
	ticks          []float64
}

// makeAxis scales an axis for data in [lo, hi] with about n intervals. A
// fixed range (fmin, fmax not both zero) is used as given; otherwise the data
// range, widened to include 0 when includeZero is set and the data lie near
// it, is rounded outwards to multiples of the tick step.
func makeAxis(lo, hi, fmin, fmax float64, includeZero bool, n int) (axis, error) {
	if fmin != 0 || fmax != 0 {
		if !(fmin < fmax) {
			return axis{}, fmt.Errorf("fixed range [%g, %g] is empty", fmin, fmax)
		}
		step := niceStep((fmax - fmin) / float64(n))
		ticks, err := ticksWithin(fmin, fmax, step)
		return axis{min: fmin, max: fmax, step: step, ticks: ticks}, err
	}
	if includeZero {
		if lo > 0 && lo <= hi/2 {
			lo = 0
		}
		if hi < 0 && hi >= lo/2 {
			hi = 0
		}
	}
	if lo == hi {
		if d := math.Abs(lo) / 10; d > 0 {
			lo, hi = lo-d, hi+d
		} else {
			hi = 1
		}
	}
	return niceScale(lo, hi, n)
}

// niceScale picks a step of 1, 2 or 5 times a power of ten giving about n
// intervals over [lo, hi], and widens the range to multiples of that step.
func niceScale(lo, hi float64, n int) (axis, error) {
	step := niceStep((hi - lo) / float64(n))
	amin := math.Floor(lo/step+1e-9) * step
	amax := math.Ceil(hi/step-1e-9) * step
	ticks, err := ticksWithin(amin, amax, step)
	return axis{min: amin, max: amax, step: step, ticks: ticks}, err
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if raw/pow <= m+1e-9 {
			return m * pow
		}
	}
	return 10 * pow
}

// ticksWithin returns the multiples of step that lie in [lo, hi].
func ticksWithin(lo, hi, step float64) ([]float64, error) {
	first := math.Ceil(lo/step - 1e-9)
	count := math.Floor(hi/step+1e-9) - first + 1
	if !(step > 0) || !finite(step) || !(count >= 1 && count <= maxTicks) {
		return nil, fmt.Errorf("range [%g, %g] cannot be divided into ticks", lo, hi)
	}
	ticks := make([]float64, int(count))
	for i := range ticks {
		ticks[i] = (first + float64(i)) * step
	}
	return ticks, nil
}

// format renders a tick value with as many decimals as the step needs.
func (a axis) format(v float64) string {
	if math.Abs(v) < a.step*1e-9 {
		v = 0 // avoid "-0" and rounding residue
	}
	if math.Max(math.Abs(a.min), math.Abs(a.max)) >= 1e7 || a.step < 1e-4 {
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	dec := 0
	if a.step < 1 {
		dec = int(math.Ceil(-math.Log10(a.step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// Ticks marks the axis's ticks for gonum/plot (gplot.Ticker).
func (a axis) Ticks(lo, hi float64) []gplot.Tick {
	out := make([]gplot.Tick, 0, len(a.ticks))
	for _, v := range a.ticks {
		out = append(out, gplot.Tick{Value: v, Label: a.format(v)})
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
