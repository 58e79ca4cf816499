package whatif

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	barColor   = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	todayColor = color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff}
)

// WritePNG draws the report for a design review: per profile, the GPU nodes
// used (with their monthly cost when priced) and the GPUs used, each against
// today's figure as a dashed line.
func (r *Report) WritePNG(w io.Writer) error {
	if len(r.Profiles) == 0 {
		return fmt.Errorf("plot: no profiles")
	}
	names := r.ProfileNames()
	for i, n := range names {
		// Two lines under each bar: "gpuslice-" / "binpack".
		if a, b, ok := strings.Cut(n, "-"); ok {
			names[i] = a + "-\n" + b
		}
	}
	nodes := make(plotter.Values, len(r.Profiles))
	gpus := make(plotter.Values, len(r.Profiles))
	nodeLabels := make([]string, len(r.Profiles))
	gpuLabels := make([]string, len(r.Profiles))
	for i, p := range r.Profiles {
		nodes[i], gpus[i] = float64(p.GPUNodesUsed), float64(p.GPUsUsed)
		nodeLabels[i] = fmt.Sprint(p.GPUNodesUsed)
		if p.DollarsPerMonth != nil {
			nodeLabels[i] += "\n" + dollars(p.DollarsPerMonth) + "/mo"
		}
		gpuLabels[i] = fmt.Sprint(p.GPUsUsed)
		if p.PodsUnplaced > 0 {
			gpuLabels[i] += fmt.Sprintf("\n%d unplaced", p.PodsUnplaced)
		}
	}
	today := fmt.Sprintf("today: %d", r.Current.GPUNodesWithPods)
	if r.Current.DollarsPerMonth != nil {
		today += ", " + dollars(r.Current.DollarsPerMonth) + "/mo"
	}
	left, err := barPlot("GPU nodes used", names, nodes, nodeLabels, float64(r.Current.GPUNodesWithPods), today)
	if err != nil {
		return err
	}
	right, err := barPlot("GPUs used", names, gpus, gpuLabels, float64(r.Current.GPUsUsed), fmt.Sprintf("today: %d", r.Current.GPUsUsed))
	if err != nil {
		return err
	}

	const width, height = 11 * vg.Inch, 5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	title := fmt.Sprintf("kubectl gpuslice whatif: %d GPU pods replayed on %d GPU nodes (%d GPUs)", r.Current.GPUPods, r.Current.GPUNodes, r.Current.GPUs)
	header := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: dc.Min.X, Y: dc.Max.Y - 0.45*vg.Inch}, Max: dc.Max}}
	sty := draw.TextStyle{Color: color.Black, Font: plot.DefaultFont, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YCenter}
	sty.Font.Size = vg.Points(14)
	header.FillText(sty, vg.Point{X: (header.Min.X + header.Max.X) / 2, Y: (header.Min.Y + header.Max.Y) / 2}, title)
	body := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: dc.Min, Max: vg.Point{X: dc.Max.X, Y: dc.Max.Y - 0.45*vg.Inch}}}
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: 0.4 * vg.Inch, PadTop: 0.05 * vg.Inch, PadBottom: 0.1 * vg.Inch, PadLeft: 0.1 * vg.Inch, PadRight: 0.2 * vg.Inch}
	plots := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(plots, tiles, body)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// barPlot is one panel: a bar per profile, labelled with its value, and
// today's figure as a dashed line.
func barPlot(title string, names []string, values plotter.Values, labels []string, today float64, todayLabel string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Tick.Label.Font.Size = vg.Points(10)
	p.Y.Tick.Label.Font.Size = vg.Points(10)
	bars, err := plotter.NewBarChart(values, vg.Points(46))
	if err != nil {
		return nil, err
	}
	bars.Color = barColor
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(9)
	p.Y.Tick.Marker = integerTicks{}

	top := today
	for _, v := range values {
		top = math.Max(top, v)
	}
	top = math.Max(top*1.4, 1)

	xys := make(plotter.XYs, len(values))
	for i, v := range values {
		xys[i] = plotter.XY{X: float64(i), Y: v + top*0.01}
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lbl.TextStyle {
		lbl.TextStyle[i].XAlign = draw.XCenter
		lbl.TextStyle[i].YAlign = draw.YBottom
		lbl.TextStyle[i].Font.Size = vg.Points(10)
	}
	p.Add(lbl)

	line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: today}, {X: float64(len(values)) - 0.5, Y: today}})
	if err != nil {
		return nil, err
	}
	line.Color = todayColor
	line.Width = vg.Points(1.5)
	line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	p.Add(line)
	p.Legend.Add(todayLabel, line)
	// After the plotters: Add widens the axes to their data.
	p.Y.Min, p.Y.Max = 0, top
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	return p, nil
}

// integerTicks marks whole numbers only, about six of them.
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	step := math.Max(1, math.Ceil((hi-lo)/6))
	// Round the step to 1, 2 or 5 times a power of ten.
	mag := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= step {
			step = m * mag
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprint(v)})
	}
	return ticks
}
