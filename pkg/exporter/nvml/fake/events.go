package fake

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// eventSet is one NVML event set. Its fields are guarded by f.mu.
type eventSet struct {
	m     *mock.EventSet
	queue []nvml.EventData
	wake  chan struct{} // capacity 1: an event was queued or the set freed
	freed bool
	masks map[int]uint64 // GPU index -> registered event types
}

func (es *eventSet) pushLocked(ev nvml.EventData) {
	es.queue = append(es.queue, ev)
	es.signal()
}

func (es *eventSet) signal() {
	select {
	case es.wake <- struct{}{}:
	default:
	}
}

func (f *Fake) newEventSet() *mock.EventSet {
	es := &eventSet{m: &mock.EventSet{}, wake: make(chan struct{}, 1), masks: map[int]uint64{}}
	es.m.WaitFunc = func(timeoutMS uint32) (nvml.EventData, nvml.Return) {
		timer := time.NewTimer(time.Duration(timeoutMS) * time.Millisecond)
		defer timer.Stop()
		for {
			f.mu.Lock()
			if es.freed {
				f.mu.Unlock()
				return nvml.EventData{}, nvml.ERROR_INVALID_ARGUMENT
			}
			if len(es.queue) > 0 {
				ev := es.queue[0]
				es.queue = es.queue[1:]
				f.mu.Unlock()
				return ev, nvml.SUCCESS
			}
			f.mu.Unlock()
			select {
			case <-es.wake:
			case <-timer.C:
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
		}
	}
	es.m.FreeFunc = func() nvml.Return {
		f.mu.Lock()
		defer f.mu.Unlock()
		if es.freed {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		es.freed = true
		delete(f.sets, es.m)
		es.signal()
		return nvml.SUCCESS
	}
	f.mu.Lock()
	f.sets[es.m] = es
	f.mu.Unlock()
	return es.m
}
