package podrequest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

var maxQuantity = resource.NewQuantity(maxPerContainer, resource.DecimalSI)

// defaultCatalog is built once: a Catalog is immutable.
var defaultCatalog = sync.OnceValue(topology.NewCatalog)

// Parse reads a pod's GPU request. Only GPU resources (see IsGPUResource)
// count; cpu, memory, other extended resources, pod overhead and ephemeral
// containers are ignored. Each container's count is its request, or its
// limit when the request is absent, as the API server defaults extended
// resources. The effective request follows Kubernetes' rules for init and
// sidecar containers.
//
// Parse returns an error, naming the container and the resource, for a
// request that differs from its limit, a negative, fractional or absurdly
// large quantity, and a MIG resource whose profile no GPU model in the
// catalog has. Every problem of the pod is reported, one per line.
func Parse(pod *v1.Pod, opts Options) (*Request, error) {
	if pod == nil {
		return nil, errors.New("podrequest: nil pod")
	}
	catalog := opts.Catalog
	if catalog == nil {
		catalog = defaultCatalog()
	}
	req := &Request{}
	var errs []error
	add := func(cs []v1.Container, init bool) {
		for i := range cs {
			c, err := parseContainer(&cs[i], init, opts, catalog)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if len(c.Resources) > 0 {
				req.Containers = append(req.Containers, c)
			}
		}
	}
	add(pod.Spec.InitContainers, true)
	add(pod.Spec.Containers, false)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	req.Effective = effective(req.Containers)
	return req, nil
}

// parseContainer reads one container's GPU resources.
func parseContainer(c *v1.Container, init bool, opts Options, catalog *topology.Catalog) (Container, error) {
	out := Container{Name: c.Name, Init: init}
	if init && c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
		out.Restartable = true
	}
	label := "container"
	if out.Restartable {
		label = "sidecar container"
	} else if init {
		label = "init container"
	}

	names := make([]string, 0, len(c.Resources.Requests)+len(c.Resources.Limits))
	for n := range c.Resources.Requests {
		if isCandidate(string(n), opts) {
			names = append(names, string(n))
		}
	}
	for n := range c.Resources.Limits {
		if _, dup := c.Resources.Requests[n]; !dup && isCandidate(string(n), opts) {
			names = append(names, string(n))
		}
	}
	slices.Sort(names)

	var errs []error
	for _, name := range names {
		n, err := count(c.Resources, name, opts, catalog)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", label, c.Name, err))
			continue
		}
		if n > 0 {
			out.Resources = append(out.Resources, ResourceCount{Name: name, Count: n})
		}
	}
	if len(errs) > 0 {
		return Container{}, errors.Join(errs...)
	}
	return out, nil
}

// count returns a container's number of devices of one GPU resource. Errors
// start with the resource name.
func count(rr v1.ResourceRequirements, name string, opts Options, catalog *topology.Catalog) (int, error) {
	if err := checkName(name, opts, catalog); err != nil {
		return 0, err
	}
	rn := v1.ResourceName(name)
	q, hasReq := rr.Requests[rn]
	if lim, hasLim := rr.Limits[rn]; hasLim {
		if hasReq && q.Cmp(lim) != 0 {
			return 0, fmt.Errorf("%s: request %s differs from limit %s; extended resources cannot be overcommitted, so set the request equal to the limit or set only the limit",
				name, q.String(), lim.String())
		}
		if !hasReq {
			q = lim
		}
	}
	switch {
	case q.Sign() < 0:
		return 0, fmt.Errorf("%s: %s is negative; ask for a positive whole number of devices", name, q.String())
	case q.IsZero():
		return 0, nil
	}
	if _, exact := q.AsScale(0); !exact {
		return 0, fmt.Errorf("%s: %s is not a whole number; the API server rejects fractional extended resources. Ask for part of a GPU with a MIG slice (%s<profile>) or a time-sliced replica (%s%s)",
			name, q.String(), topology.MIGResourcePrefix, topology.ResourceGPU, topology.SharedSuffix)
	}
	if q.Cmp(*maxQuantity) > 0 {
		return 0, fmt.Errorf("%s: %s is more than %d devices per container; no node has that many", name, q.String(), maxPerContainer)
	}
	return int(q.Value()), nil
}

// effective computes the pod's effective request per resource with
// Kubernetes' rule (k8s.io/component-helpers/resource.PodRequests):
//
//	max( sum of app containers and sidecars,
//	     for each init container i: its request + sidecars declared before it )
//
// where a sidecar's own term is the running sidecar sum including itself.
// containers must be in spec order, init containers first.
func effective(containers []Container) []ResourceCount {
	sum := map[string]int{}     // app containers and all sidecars
	sidecar := map[string]int{} // sidecars declared so far
	initMax := map[string]int{} // largest init-phase need
	for _, c := range containers {
		switch {
		case c.Restartable:
			for _, rc := range c.Resources {
				sidecar[rc.Name] += rc.Count
				sum[rc.Name] += rc.Count
				initMax[rc.Name] = max(initMax[rc.Name], sidecar[rc.Name])
			}
		case c.Init:
			for _, rc := range c.Resources {
				initMax[rc.Name] = max(initMax[rc.Name], rc.Count+sidecar[rc.Name])
			}
		default:
			for _, rc := range c.Resources {
				sum[rc.Name] += rc.Count
			}
		}
	}
	out := make([]ResourceCount, 0, len(sum)+len(initMax))
	for name, n := range sum {
		if n = max(n, initMax[name]); n > 0 {
			out = append(out, ResourceCount{Name: name, Count: n})
		}
	}
	for name, n := range initMax {
		if _, done := sum[name]; !done && n > 0 {
			out = append(out, ResourceCount{Name: name, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b ResourceCount) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// String lists the effective request as "name=count" pairs sorted by name,
// e.g. "nvidia.com/gpu=1,nvidia.com/mig-1g.5gb=2"; "" when empty. (Key
// adds the sharing.)
func (r *Request) String() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	WriteCounts(&b, r.Effective)
	return b.String()
}

// Key is String followed by ";sharing=<Sharing>" unless the sharing is Any:
// two requests with equal keys are judged alike on every node.
func (r *Request) Key() string {
	s := r.String()
	if s != "" && r.Sharing != "" && r.Sharing != SharingAny {
		s += ";sharing=" + string(r.Sharing)
	}
	return s
}

// WriteCounts writes counts as "name=count" pairs, comma-separated, in
// their order.
func WriteCounts(b *strings.Builder, counts []ResourceCount) {
	for i, rc := range counts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(rc.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(rc.Count))
	}
}
