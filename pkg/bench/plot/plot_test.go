package plot

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func twoSeries() *Chart {
	return &Chart{
		Title:  "Scheduling throughput",
		XLabel: "nodes",
		YLabel: "pods/s",
		Series: []Series{
			{Name: "gpuslice", Points: []Point{{0, 10}, {50, 80}, {100, 120}, {25, 40}}},
			{Name: "default", Points: []Point{{0, 5}, {50, 30}, {100, 60}}},
		},
	}
}

// colours returns the set of distinct colours in img.
func colours(img image.Image) map[color.RGBA]bool {
	set := map[color.RGBA]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			set[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	return set
}

func TestRenderTwoSeries(t *testing.T) {
	c := twoSeries()
	c.Width, c.Height = 800, 500
	img, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, 800, 500) {
		t.Fatalf("bounds = %v, want 800x500", got)
	}
	set := colours(img)
	for name, want := range map[string]color.RGBA{
		"series 0": palette[0], "series 1": palette[1],
		"grid": gridColor, "background": backgroundColor,
	} {
		if !set[want] {
			t.Errorf("%s colour %v not found in image", name, want)
		}
	}
	for _, unused := range palette[2:] {
		if unused.R == unused.G && unused.G == unused.B {
			continue // grey: anti-aliased black text has it too
		}
		if set[unused] {
			t.Errorf("colour %v of an absent series found in image", unused)
		}
	}
	if first := c.Series[0].Points[3]; first != (Point{25, 40}) {
		t.Errorf("Render reordered the caller's points: %v", c.Series[0].Points)
	}
}

func TestRenderDefaultSize(t *testing.T) {
	img, err := twoSeries().Render()
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, defaultWidth, defaultHeight) {
		t.Fatalf("bounds = %v, want %dx%d", got, defaultWidth, defaultHeight)
	}
}

func TestRenderManySeries(t *testing.T) {
	c := &Chart{Title: "many"}
	for i := range 23 {
		c.Series = append(c.Series, Series{
			Name:   strings.Repeat("x", i*3),
			Points: []Point{{0, float64(i)}, {10, float64(i * 2)}},
		})
	}
	img, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	set := colours(img)
	for i, col := range palette {
		if !set[col] {
			t.Errorf("palette colour %d missing", i)
		}
	}
}

func TestRenderClipsToPlotArea(t *testing.T) {
	c := &Chart{
		Width: 400, Height: 300,
		// Unnamed: no legend entry, which would sit outside the data area.
		Series: []Series{{Points: []Point{{-1000, -1e12}, {0, 5}, {1, 1e300}, {2, 5}}}},
		XMin:   0, XMax: 2, YMin: 0, YMax: 10,
	}
	img, area, err := c.render()
	if err != nil {
		t.Fatal(err)
	}
	if area.Dx() < 100 || area.Dy() < 100 || !area.In(img.Bounds()) {
		t.Fatalf("data area %v in a %v image", area, img.Bounds())
	}
	// The series colour appears only inside the data area, give or take
	// half the 2 pt (2.7 px) line width where a line is clipped at an edge.
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)) == palette[0] && !image.Pt(x, y).In(area.Inset(-3)) {
				t.Fatalf("series pixel at (%d,%d), outside the data area %v", x, y, area)
			}
		}
	}
	if !colours(img)[palette[0]] {
		t.Error("series colour missing")
	}
}

// TestZoomRescalesY: with a fixed X range and no Y range, Y spans the points
// inside the X range, not the whole series.
func TestZoomRescalesY(t *testing.T) {
	c := &Chart{
		Series: []Series{{Name: "a", Points: []Point{{0, 1000}, {50, 900}, {80, 10}, {100, 12}, {130, 14}, {150, 500}}}},
		XMin:   80, XMax: 130,
	}
	series, err := c.sortedSeries()
	if err != nil {
		t.Fatal(err)
	}
	lo, hi, ok := yWithin(series, 80, 130)
	if !ok || lo != 10 || hi != 14 {
		t.Fatalf("yWithin = %v %v %v, want 10 14", lo, hi, ok)
	}
	if _, err := c.Render(); err != nil {
		t.Fatal(err)
	}

	// The drawing honours the zoom: from (80,80) to (130,130) the line runs
	// from the data area's bottom-left corner to its top-right one; the
	// point at x=0 (y=200) outside the zoom does not pull it to the top left.
	z := &Chart{Width: 400, Height: 300, XMin: 80, XMax: 130, Series: []Series{{Points: []Point{{0, 200}, {80, 80}, {130, 130}}}}}
	img, area, err := z.render()
	if err != nil {
		t.Fatal(err)
	}
	near := func(x, y int) bool {
		for dy := -4; dy <= 4; dy++ {
			for dx := -4; dx <= 4; dx++ {
				if color.RGBAModel.Convert(img.At(x+dx, y+dy)) == palette[0] {
					return true
				}
			}
		}
		return false
	}
	if !near(area.Min.X+4, area.Max.Y-4) || !near(area.Max.X-4, area.Min.Y+4) {
		t.Error("zoomed line does not run corner to corner")
	}
	if near(area.Min.X+4, area.Min.Y+4) {
		t.Error("line drawn at the top left: the zoom was widened to the data")
	}
}

func TestRenderErrors(t *testing.T) {
	pts := []Point{{0, 1}, {1, 2}}
	for _, tc := range []struct {
		name  string
		chart Chart
		want  string
	}{
		{"no series", Chart{}, "no series"},
		{"empty series", Chart{Series: []Series{{Name: "a", Points: pts}, {Name: "b"}}}, "no points"},
		{"NaN", Chart{Series: []Series{{Points: []Point{{0, math.NaN()}}}}}, "NaN"},
		{"Inf", Chart{Series: []Series{{Points: []Point{{math.Inf(1), 0}}}}}, "infinite"},
		{"narrow", Chart{Width: 100, Series: []Series{{Points: pts}}}, "size"},
		{"short", Chart{Height: 50, Series: []Series{{Points: pts}}}, "size"},
		{"negative", Chart{Width: -5, Series: []Series{{Points: pts}}}, "size"},
		{"empty range", Chart{YMin: 5, YMax: 1, Series: []Series{{Points: pts}}}, "empty"},
		{"NaN range", Chart{XMax: math.NaN(), Series: []Series{{Points: pts}}}, "NaN"},
		{"huge range", Chart{Series: []Series{{Points: []Point{{-math.MaxFloat64, 0}, {math.MaxFloat64, 1}}}}}, "ticks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.chart.Render()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct {
		lo, hi    float64
		n         int
		wantTicks []float64
	}{
		{0, 130, 7, []float64{0, 20, 40, 60, 80, 100, 120, 140}},
		{2.3, 7.9, 7, []float64{2, 3, 4, 5, 6, 7, 8}},
		{0, 1, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{-3, 17, 5, []float64{-5, 0, 5, 10, 15, 20}},
		{0.001, 0.0093, 5, []float64{0, 0.002, 0.004, 0.006, 0.008, 0.01}},
		{1200, 98000, 5, []float64{0, 20000, 40000, 60000, 80000, 100000}},
	} {
		a, err := niceScale(tc.lo, tc.hi, tc.n)
		if err != nil {
			t.Fatalf("niceScale(%g, %g): %v", tc.lo, tc.hi, err)
		}
		if !approxEqual(a.ticks, tc.wantTicks) || a.min != a.ticks[0] || a.max != a.ticks[len(a.ticks)-1] {
			t.Errorf("niceScale(%g, %g, %d) = [%g, %g] ticks %v, want ticks %v",
				tc.lo, tc.hi, tc.n, a.min, a.max, a.ticks, tc.wantTicks)
		}
	}
}

func TestMakeAxis(t *testing.T) {
	for _, tc := range []struct {
		name               string
		lo, hi, fmin, fmax float64
		zero               bool
		wantMin, wantMax   float64
	}{
		{"y near zero", 2.3, 7.9, 0, 0, true, 0, 8},
		{"y far from zero", 95, 100, 0, 0, true, 95, 100},
		{"negative y", -80, -10, 0, 0, true, -80, 0},
		{"x keeps offset", 2.3, 7.9, 0, 0, false, 2, 8},
		{"constant", 5, 5, 0, 0, true, 4.4, 5.6},
		{"all zero", 0, 0, 0, 0, true, 0, 1},
		{"fixed", 3, 400, 0, 130, true, 0, 130},
	} {
		a, err := makeAxis(tc.lo, tc.hi, tc.fmin, tc.fmax, tc.zero, 5)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if math.Abs(a.min-tc.wantMin) > 1e-9 || math.Abs(a.max-tc.wantMax) > 1e-9 {
			t.Errorf("%s: range [%g, %g], want [%g, %g]", tc.name, a.min, a.max, tc.wantMin, tc.wantMax)
		}
		for _, v := range a.ticks {
			if v < a.min-1e-9 || v > a.max+1e-9 {
				t.Errorf("%s: tick %g outside [%g, %g]", tc.name, v, a.min, a.max)
			}
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		a    axis
		v    float64
		want string
	}{
		{axis{max: 140, step: 20}, 140, "140"},
		{axis{max: 1, step: 0.2}, 3 * 0.2, "0.6"},
		{axis{max: 0.01, step: 0.002}, 0.004, "0.004"},
		{axis{min: -1, max: 1, step: 0.5}, -1e-17, "0.0"},
		{axis{max: 5e7, step: 1e7}, 3e7, "3e+07"},
	} {
		if got := tc.a.format(tc.v); got != tc.want {
			t.Errorf("format(%g) with step %g = %q, want %q", tc.v, tc.a.step, got, tc.want)
		}
	}
}

func TestWritePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	c := twoSeries()
	c.Width, c.Height = 640, 400
	if err := c.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding written PNG: %v", err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, 640, 400) {
		t.Errorf("decoded bounds = %v, want 640x400", got)
	}
	if err := (&Chart{}).WritePNG(filepath.Join(t.TempDir(), "bad.png")); err == nil {
		t.Error("WritePNG of an empty chart succeeded")
	}
	if os.Getenv("PLOT_SAMPLE") != "" { // handy for eyeballing the output
		_ = c.WritePNG(os.Getenv("PLOT_SAMPLE"))
	}
}

func approxEqual(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) })
}

func seq(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}
