// Package plot draws simple line charts to PNG files.
//
// It uses only the standard library image packages and the fixed-size
// bitmap font from golang.org/x/image/font/basicfont, so benchmark tooling
// can emit charts without depending on a full plotting library. Lines are
// 2 px wide and not anti-aliased; text is drawn horizontally.
package plot

import (
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Point is one data point.
type Point struct{ X, Y float64 }

// Series is a named sequence of points drawn as one polyline. The points
// need not be sorted: they are drawn in order of increasing X.
type Series struct {
	Name   string
	Points []Point
}

// Chart describes a line chart.
//
// Width and Height are in pixels; a zero value means the default of
// 1000x640. XMin/XMax and YMin/YMax fix an axis range: when both values of a
// pair are zero the range is chosen automatically (rounded outwards to nice
// values, and for Y extended to include 0 when the data lie near it);
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
	tickLen       = 5
	markerMax     = 40 // series with at most this many points get markers
	maxTicks      = 1000
)

// Fixed palettes. Series i uses palette[i%len(palette)] and, once the
// colours run out, dashes[(i/len(palette))%len(dashes)] as its dash pattern
// (one character per pixel stepped, repeating: 'x' draws, '.' skips; "" is
// solid).
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
	dashes = [...]string{"", "xxxxxxxxxx......", "xxx....", "xxxxxxxxxxxx....xxx...."}

	backgroundColor = color.RGBA{0xff, 0xff, 0xff, 0xff}
	axisColor       = color.RGBA{0x22, 0x22, 0x22, 0xff} // axes, ticks and text
	gridColor       = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// Render draws the chart. It fails if there are no series, a series has no
// points, a value or fixed range bound is NaN or infinite, a fixed range is
// empty, or the image is too small (under 240x160 pixels).
func (c *Chart) Render() (image.Image, error) {
	w, h := c.Width, c.Height
	if w == 0 {
		w = defaultWidth
	}
	if h == 0 {
		h = defaultHeight
	}
	if w < minWidth || h < minHeight {
		return nil, fmt.Errorf("plot: image size %dx%d is below the minimum %dx%d", w, h, minWidth, minHeight)
	}
	series, err := c.sortedSeries()
	if err != nil {
		return nil, err
	}
	xlo, xhi, ylo, yhi := bounds(series)

	// Vertical layout is fixed, so the Y axis can be scaled first; its tick
	// labels then decide the left margin and hence the X axis length.
	top, bottom := 20, 30
	if c.Title != "" || c.YLabel != "" {
		top = 50
	}
	if c.XLabel != "" {
		bottom = 50
	}
	plotH := h - top - bottom
	yAx, err := makeAxis(ylo, yhi, c.YMin, c.YMax, true, clamp(plotH/50, 3, 10))
	if err != nil {
		return nil, fmt.Errorf("plot: y axis: %w", err)
	}
	left := 10
	for _, v := range yAx.ticks {
		left = max(left, textWidth(yAx.format(v)))
	}
	left += tickLen + 14
	names, legendW := legendNames(series, w/3)
	plot := image.Rect(left, top, w-legendW-26, h-bottom)
	if plot.Dx() < 60 || plot.Dy() < 60 {
		return nil, fmt.Errorf("plot: image size %dx%d leaves no room for the plot area", w, h)
	}
	xAx, err := makeAxis(xlo, xhi, c.XMin, c.XMax, false, clamp(plot.Dx()/100, 2, 10))
	if err != nil {
		return nil, fmt.Errorf("plot: x axis: %w", err)
	}

	// Background, with a frame just outside the plot area that clipped
	// drawing never touches.
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, img.Bounds(), backgroundColor)
	fill(img, plot.Inset(-1), axisColor)
	fill(img, plot, backgroundColor)
	toPx := func(p Point) (float64, float64) {
		px := float64(plot.Min.X) + (p.X-xAx.min)/(xAx.max-xAx.min)*float64(plot.Dx()-1)
		py := float64(plot.Max.Y-1) - (p.Y-yAx.min)/(yAx.max-yAx.min)*float64(plot.Dy()-1)
		// Keep far-away points finite for clipping; the visible error is negligible.
		return math.Max(-1e7, math.Min(1e7, px)), math.Max(-1e7, math.Min(1e7, py))
	}

	// Grid, tick marks and tick labels.
	for _, v := range xAx.ticks {
		x, _ := toPx(Point{X: v, Y: yAx.min})
		xi := int(math.Round(x))
		fill(img, image.Rect(xi, plot.Min.Y, xi+1, plot.Max.Y), gridColor)
		fill(img, image.Rect(xi, plot.Max.Y, xi+1, plot.Max.Y+tickLen), axisColor)
		s := xAx.format(v)
		drawText(img, s, xi-textWidth(s)/2, plot.Max.Y+tickLen+13)
	}
	for _, v := range yAx.ticks {
		_, y := toPx(Point{X: xAx.min, Y: v})
		yi := int(math.Round(y))
		fill(img, image.Rect(plot.Min.X, yi, plot.Max.X, yi+1), gridColor)
		fill(img, image.Rect(plot.Min.X-tickLen, yi, plot.Min.X, yi+1), axisColor)
		s := yAx.format(v)
		drawText(img, s, plot.Min.X-tickLen-4-textWidth(s), yi+4)
	}

	// Series, clipped to the plot area.
	for i, s := range series {
		p := newPen(img, plot, i)
		for j := 1; j < len(s.Points); j++ {
			x0, y0 := toPx(s.Points[j-1])
			x1, y1 := toPx(s.Points[j])
			p.line(x0, y0, x1, y1)
		}
		if len(s.Points) <= markerMax {
			for _, pt := range s.Points {
				x, y := toPx(pt)
				xi, yi := int(math.Round(x)), int(math.Round(y))
				fill(img, image.Rect(xi-2, yi-2, xi+3, yi+3).Intersect(plot), p.col)
			}
		}
	}

	// Title and axis labels.
	if c.Title != "" {
		drawText(img, c.Title, (w-textWidth(c.Title))/2, 22)
	}
	if c.YLabel != "" {
		drawText(img, c.YLabel, max(4, plot.Min.X-tickLen-4-textWidth(yAx.format(yAx.max))), plot.Min.Y-9)
	}
	if c.XLabel != "" {
		drawText(img, c.XLabel, plot.Min.X+(plot.Dx()-textWidth(c.XLabel))/2, plot.Max.Y+tickLen+33)
	}

	// Legend outside the plot area, on the right.
	box := image.Rect(plot.Max.X+16, plot.Min.Y, plot.Max.X+16+legendW, plot.Min.Y+8+16*len(names))
	fill(img, box, axisColor)
	fill(img, box.Inset(1), backgroundColor)
	for i, name := range names {
		y := box.Min.Y + 12 + 16*i
		p := newPen(img, box.Inset(1), i)
		p.line(float64(box.Min.X+8), float64(y), float64(box.Min.X+36), float64(y))
		drawText(img, name, box.Min.X+42, y+4)
	}
	return img, nil
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

// legendNames returns the legend entries, shortened so the legend box is at
// most maxW pixels wide, and the box width.
func legendNames(series []Series, maxW int) ([]string, int) {
	const extra = 52 // padding plus the line sample
	limit := max(4, (maxW-extra)/textWidth("0"))
	names := make([]string, len(series))
	longest := 0
	for i, s := range series {
		name := s.Name
		if r := []rune(name); len(r) > limit {
			name = string(r[:limit-2]) + ".."
		}
		names[i] = name
		longest = max(longest, textWidth(name))
	}
	return names, longest + extra
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

// pen draws 2 px wide, optionally dashed lines clipped to a rectangle.
type pen struct {
	img  *image.RGBA
	clip image.Rectangle
	col  color.RGBA
	dash string // see dashes
	pos  int    // pixels stepped so far, to continue the dash across segments
}

// newPen returns the pen for series i, clipped to clip.
func newPen(img *image.RGBA, clip image.Rectangle, i int) pen {
	return pen{img: img, clip: clip, col: palette[i%len(palette)], dash: dashes[(i/len(palette))%len(dashes)]}
}

// line draws from (x0, y0) to (x1, y1) with Bresenham's algorithm.
func (p *pen) line(x0, y0, x1, y1 float64) {
	x0, y0, x1, y1, ok := clipSegment(x0, y0, x1, y1, p.clip)
	if !ok {
		return
	}
	ax, ay := int(math.Round(x0)), int(math.Round(y0))
	bx, by := int(math.Round(x1)), int(math.Round(y1))
	dx, dy := abs(bx-ax), -abs(by-ay)
	sx, sy := sign(bx-ax), sign(by-ay)
	e := dx + dy
	for {
		if p.dash == "" || p.dash[p.pos%len(p.dash)] == 'x' {
			fill(p.img, image.Rect(ax, ay, ax+2, ay+2).Intersect(p.clip), p.col)
		}
		p.pos++
		if ax == bx && ay == by {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e, ax = e+dy, ax+sx
		}
		if e2 <= dx {
			e, ay = e+dx, ay+sy
		}
	}
}

// clipSegment clips a segment to the pixel centres of r (Liang-Barsky),
// reporting false when nothing of it is inside.
func clipSegment(x0, y0, x1, y1 float64, r image.Rectangle) (float64, float64, float64, float64, bool) {
	dx, dy := x1-x0, y1-y0
	t0, t1 := 0.0, 1.0
	edges := [4][2]float64{
		{-dx, x0 - float64(r.Min.X)}, {dx, float64(r.Max.X-1) - x0},
		{-dy, y0 - float64(r.Min.Y)}, {dy, float64(r.Max.Y-1) - y0},
	}
	for _, e := range edges {
		p, q := e[0], e[1]
		if p == 0 {
			if q < 0 {
				return 0, 0, 0, 0, false
			}
			continue
		}
		t := q / p
		if p < 0 {
			if t > t1 {
				return 0, 0, 0, 0, false
			}
			t0 = math.Max(t0, t)
		} else {
			if t < t0 {
				return 0, 0, 0, 0, false
			}
			t1 = math.Min(t1, t)
		}
	}
	return x0 + t0*dx, y0 + t0*dy, x0 + t1*dx, y0 + t1*dy, true
}

// fill paints r (clipped to the image) in a solid colour.
func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// drawText draws s in the axis colour with its baseline at y.
func drawText(img *image.RGBA, s string, x, y int) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(axisColor), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// textWidth returns the width of s in pixels.
func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Ceil()
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func clamp(v, lo, hi int) int { return max(lo, min(hi, v)) }

func abs(v int) int { return max(v, -v) }

func sign(v int) int { return cmp.Compare(v, 0) }
