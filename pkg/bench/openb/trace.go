package openb

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ReadNodes reads a node list (columns sn, cpu_milli, memory_mib, gpu,
// model; others ignored).
func ReadNodes(path string) ([]Node, error) {
	rows, err := readCSV(path, []string{"sn", "cpu_milli", "memory_mib", "gpu"}, []string{"model"})
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, r := range rows {
		n := Node{Name: r.get("sn"), Model: r.get("model")}
		var errs []error
		n.CPUMilli, errs = r.int("cpu_milli", errs)
		n.MemMiB, errs = r.int("memory_mib", errs)
		var gpus int64
		gpus, errs = r.int("gpu", errs)
		n.GPUs = int(gpus)
		switch {
		case n.Name == "":
			errs = append(errs, errors.New("empty sn"))
		case n.GPUs > 0 && n.Model == "":
			errs = append(errs, fmt.Errorf("%d GPUs but no model", n.GPUs))
		case n.GPUs > 64:
			errs = append(errs, fmt.Errorf("%d GPUs on one node", n.GPUs))
		}
		if err := r.check(errs); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no nodes", path)
	}
	return out, nil
}

// ReadPods reads a pod list: columns name, cpu_milli, memory_mib, num_gpu,
// gpu_milli, and optionally gpu_spec ("A|B" allowed models); the others
// (qos, phase, times) are ignored, as the FGD simulator ignores them.
func ReadPods(path string) ([]Pod, error) {
	rows, err := readCSV(path, []string{"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}, []string{"gpu_spec"})
	if err != nil {
		return nil, err
	}
	var out []Pod
	for _, r := range rows {
		p := Pod{Name: r.get("name")}
		var errs []error
		p.CPUMilli, errs = r.int("cpu_milli", errs)
		p.MemMiB, errs = r.int("memory_mib", errs)
		var num int64
		num, errs = r.int("num_gpu", errs)
		p.NumGPU = int(num)
		p.GPUMilli, errs = r.int("gpu_milli", errs)
		if spec := strings.TrimSpace(r.get("gpu_spec")); spec != "" && spec != "nan" {
			for _, m := range strings.Split(spec, "|") {
				if m = strings.TrimSpace(m); m != "" {
					p.Models = append(p.Models, m)
				}
			}
		}
		switch {
		case p.Name == "":
			errs = append(errs, errors.New("empty name"))
		case p.NumGPU < 0 || p.GPUMilli < 0 || p.CPUMilli < 0 || p.MemMiB < 0:
			errs = append(errs, errors.New("negative request"))
		case p.NumGPU == 0 && p.GPUMilli != 0:
			errs = append(errs, fmt.Errorf("gpu_milli %d without num_gpu", p.GPUMilli))
		case p.NumGPU > 0 && (p.GPUMilli <= 0 || p.GPUMilli > MilliPerGPU):
			errs = append(errs, fmt.Errorf("gpu_milli %d outside 1..%d", p.GPUMilli, MilliPerGPU))
		case p.NumGPU > 1 && p.GPUMilli != MilliPerGPU:
			errs = append(errs, fmt.Errorf("%d GPUs of %d milli each: only single-GPU pods may share", p.NumGPU, p.GPUMilli))
		}
		if err := r.check(errs); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pods", path)
	}
	return out, nil
}

type row struct {
	where string
	cols  map[string]int
	vals  []string
}

func (r row) get(col string) string {
	if i, ok := r.cols[col]; ok && i < len(r.vals) {
		return strings.TrimSpace(r.vals[i])
	}
	return ""
}

func (r row) int(col string, errs []error) (int64, []error) {
	s := r.get(col)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Some exports write integers as floats ("1000.0").
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, append(errs, fmt.Errorf("%s: %q is not an integer", col, s))
		}
		v = int64(f)
	}
	return v, errs
}

func (r row) check(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", r.where, errors.Join(errs...))
}

func readCSV(path string, required, optional []string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	cols := map[string]int{}
	for i, h := range header {
		cols[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	var missing []string
	for _, c := range required {
		if _, ok := cols[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing column(s) %s (header: %s)", path, strings.Join(missing, ", "), strings.Join(header, ","))
	}
	_ = optional // documented for readers; absent optional columns read as ""
	var rows []row
	for line := 2; ; line++ {
		vals, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(vals) == 1 && strings.TrimSpace(vals[0]) == "" {
			continue
		}
		rows = append(rows, row{where: fmt.Sprintf("%s:%d", path, line), cols: cols, vals: vals})
	}
	return rows, nil
}

// TimedPod is a pod of a pod list with the trace's times, in seconds from
// the start of the trace.
type TimedPod struct {
	Pod
	Created, Deleted int64
	// Scheduled is when production started it; -1 when it never was.
	Scheduled int64
}

// ReadTimedPods reads a pod list with its creation_time and deletion_time
// (and scheduled_time, which may be empty: a pod never started), for
// replays with departures. A pod deleted before it was created, or started
// outside its life, is an error.
func ReadTimedPods(path string) ([]TimedPod, error) {
	pods, err := ReadPods(path)
	if err != nil {
		return nil, err
	}
	rows, err := readCSV(path, []string{"name", "creation_time", "deletion_time"}, []string{"scheduled_time"})
	if err != nil {
		return nil, err
	}
	if len(rows) != len(pods) {
		return nil, fmt.Errorf("%s: %d rows but %d pods", path, len(rows), len(pods))
	}
	out := make([]TimedPod, len(pods))
	for i, r := range rows {
		tp := TimedPod{Pod: pods[i], Scheduled: -1}
		var errs []error
		tp.Created, errs = r.int("creation_time", errs)
		tp.Deleted, errs = r.int("deletion_time", errs)
		if s := r.get("scheduled_time"); s != "" && s != "nan" {
			tp.Scheduled, errs = r.int("scheduled_time", errs)
		}
		switch {
		case len(errs) > 0:
		case tp.Created < 0 || tp.Deleted < tp.Created:
			errs = append(errs, fmt.Errorf("deleted at %d before created at %d", tp.Deleted, tp.Created))
		case tp.Scheduled >= 0 && (tp.Scheduled < tp.Created || tp.Scheduled > tp.Deleted):
			errs = append(errs, fmt.Errorf("scheduled at %d outside its life %d..%d", tp.Scheduled, tp.Created, tp.Deleted))
		}
		if err := r.check(errs); err != nil {
			return nil, err
		}
		out[i] = tp
	}
	return out, nil
}
