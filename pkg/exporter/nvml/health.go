package nvml

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// applicationXIDs are the XIDs the NVIDIA device plugin ignores because they
// are application errors after which the GPU stays healthy. Every other XID
// reported as nvmlEventTypeXidCriticalError (48 DBE, 63/64 row remapping,
// 74 NVLink, 79 fallen off the bus, 94/95 contained/uncontained ECC, ...)
// makes the plugin mark the GPU unhealthy and stop advertising it, so the
// scheduler must treat it the same way.
//
// Source: NVIDIA/k8s-device-plugin internal/rm/health.go,
// getDisabledHealthCheckXids ("Application errors: the GPU should still be
// healthy"), which also honours DP_DISABLE_HEALTHCHECKS /
// DP_ENABLE_HEALTHCHECKS; those per-node overrides are not modelled here.
// XID meanings: https://docs.nvidia.com/deploy/xid-errors/.
var applicationXIDs = map[uint64]string{
	13:  "Graphics Engine Exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "Preemptive cleanup, due to previous errors",
	68:  "Video processor exception",
	109: "Context Switch Timeout Error",
}

// ApplicationXIDs returns, sorted, the XIDs that are not critical.
func ApplicationXIDs() []uint64 {
	out := make([]uint64, 0, len(applicationXIDs))
	for x := range applicationXIDs {
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// IsCriticalXID reports whether the NVIDIA device plugin marks a GPU
// unhealthy on this XID.
func IsCriticalXID(xid uint64) bool {
	_, app := applicationXIDs[xid]
	return !app
}

func (r *reader) WatchHealth(ctx context.Context, out chan<- HealthEvent) (rerr error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.watchers.Add(1)
	r.mu.Unlock()
	defer r.watchers.Done()

	set, ret := r.lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: creating event set: %w", ret)
	}
	defer func() {
		if ret := set.Free(); ret != gonvml.SUCCESS && rerr == nil {
			rerr = fmt.Errorf("nvml: freeing event set: %w", ret)
		}
	}()

	gpus, err := r.registerXIDEvents(set)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.done:
			return ErrClosed
		default:
		}
		data, ret := set.Wait(eventWaitMS)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_TIMEOUT:
			continue
		default:
			return fmt.Errorf("nvml: waiting for events: %w", ret)
		}
		if data.EventType != gonvml.EventTypeXidCriticalError {
			continue
		}
		now := time.Now()
		uuids := []string{eventGPU(data.Device, gpus)}
		if uuids[0] == "" {
			// Like the device plugin: an XID on a GPU we cannot
			// identify counts against every watched GPU.
			uuids = gpus.list
		}
		for _, u := range uuids {
			ev := HealthEvent{GPUUUID: u, XID: data.EventData, Critical: IsCriticalXID(data.EventData), Time: now}
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			case <-r.done:
				return ErrClosed
			}
		}
	}
}

// watched are the GPUs registered for XID events.
type watched struct {
	list []string
	set  map[string]bool
}

// registerXIDEvents registers every GPU that supports XID events. GPUs that
// do not are left out; it fails only when GPUs exist and none registered.
func (r *reader) registerXIDEvents(set gonvml.EventSet) (watched, error) {
	w := watched{set: map[string]bool{}}
	count, ret := r.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return w, fmt.Errorf("nvml: counting GPUs: %w", ret)
	}
	var problems []string
	for i := 0; i < count; i++ {
		dev, ret := r.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			problems = append(problems, fmt.Sprintf("gpu %d: device handle: %v", i, ret))
			continue
		}
		uuid, ret := dev.GetUUID()
		if ret != gonvml.SUCCESS {
			problems = append(problems, fmt.Sprintf("gpu %d: UUID: %v", i, ret))
			continue
		}
		supported, ret := dev.GetSupportedEventTypes()
		if ret != gonvml.SUCCESS {
			problems = append(problems, fmt.Sprintf("gpu %d: supported event types: %v", i, ret))
			continue
		}
		if supported&gonvml.EventTypeXidCriticalError == 0 {
			problems = append(problems, fmt.Sprintf("gpu %d: no XID events", i))
			continue
		}
		if ret := dev.RegisterEvents(gonvml.EventTypeXidCriticalError, set); ret != gonvml.SUCCESS {
			problems = append(problems, fmt.Sprintf("gpu %d: registering XID events: %v", i, ret))
			continue
		}
		w.list = append(w.list, uuid)
		w.set[uuid] = true
	}
	if count > 0 && len(w.list) == 0 {
		return w, fmt.Errorf("nvml: no GPU accepts XID events: %s", strings.Join(problems, "; "))
	}
	return w, nil
}

// eventGPU returns the watched physical GPU an event came from, or "".
func eventGPU(dev gonvml.Device, gpus watched) string {
	if dev == nil {
		return ""
	}
	uuid, ret := dev.GetUUID()
	if ret != gonvml.SUCCESS {
		return ""
	}
	if gpus.set[uuid] {
		return uuid
	}
	if strings.HasPrefix(uuid, "MIG-") {
		parent, ret := dev.GetDeviceHandleFromMigDeviceHandle()
		if ret != gonvml.SUCCESS {
			return ""
		}
		if p, ret := parent.GetUUID(); ret == gonvml.SUCCESS && gpus.set[p] {
			return p
		}
	}
	return ""
}
