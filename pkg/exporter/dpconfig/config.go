// Package dpconfig reads the NVIDIA k8s-device-plugin's config file (format
// version v1, the file behind --config-file / CONFIG_FILE, usually a
// ConfigMap key mounted by the GPU Operator or the plugin's Helm chart) and
// turns it into the part of gpuslice's topology model that the plugin's
// configuration decides: the MIG strategy, the device ID strategy, the
// shared-devices allocation policy and the time-slicing section.
//
// The parser follows the plugin's own decoding (sigs.k8s.io/yaml into
// api/config/v1): keys of the plain structs (the top level, flags,
// flags.plugin, sharing) match case-insensitively as encoding/json does, while
// the hand-written decoders of sharing.timeSlicing and its resources match
// exactly. Where the plugin would refuse to start, Parse returns an error
// that wraps ErrInvalid. Where the plugin would start but do something
// gpuslice cannot model, or would silently ignore what the file asks for, it
// returns an error that wraps ErrUnsupported; the exporter then publishes the
// node as Degraded with that message instead of guessing. Every error names
// the field at fault, e.g.
//
//	sharing.timeSlicing.resources[1].replicas: must be >= 2, got 0
//
// What gpuslice cannot model (ErrUnsupported):
//   - MPS sharing (sharing.mps);
//   - a devices subset in a time-slicing resource (devices: <count> or a
//     list): the stock plugin ignores it and shares every device, a patched
//     build may honour it;
//   - a custom rename in a time-slicing resource, unless WithCustomRename is
//     given: the stock plugin (DisableResourceNamingInConfig) ignores it and
//     advertises <name> or, with renameByDefault, <name>.shared;
//   - the top-level resources section (custom names and device patterns),
//     which the stock plugin ignores;
//   - time-slicing of anything but nvidia.com/gpu and nvidia.com/mig-<profile>,
//     a resource listed twice, more than MaxReplicas replicas;
//   - unknown keys under sharing, sharing.timeSlicing and its resources
//     (the plugin ignores them: a misspelt or mis-cased renameByDefault would
//     silently do nothing).
//
// Unknown keys elsewhere (flags the scheduler does not care about, gfd, imex)
// are ignored, as the plugin ignores them.
package dpconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Version is the only config file version the parser (and the plugin) knows.
const Version = "v1"

// MaxReplicas is the largest time-slicing replica count gpuslice accepts. The
// plugin has no limit; gpuslice refuses more rather than model billions of
// replica IDs.
const MaxReplicas = 1024

// MaxFileSize bounds what Load reads; a ConfigMap cannot hold more than 1 MiB.
const MaxFileSize = 1 << 20

// resourcePrefix is what the plugin prepends to resource names given without
// a domain ("gpu" -> "nvidia.com/gpu"), and maxResourceNameLength the
// plugin's limit on a fully qualified name.
const (
	resourcePrefix        = "nvidia.com"
	maxResourceNameLength = 63
)

var (
	// ErrInvalid is wrapped by errors for files the device plugin itself
	// rejects at start-up (it would crash-loop or fall back to failing).
	ErrInvalid = errors.New("invalid device plugin config")
	// ErrUnsupported is wrapped by errors for valid settings gpuslice cannot
	// model.
	ErrUnsupported = errors.New("not supported by gpuslice")
)

// Config is what gpuslice needs from the device plugin's configuration.
type Config struct {
	MIGStrategy      topology.MIGStrategy
	DeviceIDStrategy topology.DeviceIDStrategy
	AllocationPolicy topology.AllocationPolicy
	// TimeSlicing is nil when the plugin does not time-slice. Renamed
	// resources follow topology.TimeSlicing's rules: RenameByDefault gives
	// <name>.shared, and Rename is set only for a custom name (which needs
	// WithCustomRename).
	TimeSlicing *topology.TimeSlicing
}

// Defaults returns the plugin's defaults: the settings of a node whose plugin
// runs without a config file and without flags.
func Defaults() *Config {
	return &Config{
		MIGStrategy:      topology.MIGStrategyNone,
		DeviceIDStrategy: topology.DeviceIDUUID,
		AllocationPolicy: topology.PolicyDistributed,
	}
}

// ApplyTo copies the configuration onto a node (deep-copying TimeSlicing).
func (c *Config) ApplyTo(n *topology.Node) {
	n.MIGStrategy = c.MIGStrategy
	n.DeviceIDStrategy = c.DeviceIDStrategy
	n.AllocationPolicy = c.AllocationPolicy
	n.TimeSlicing = nil
	if c.TimeSlicing != nil {
		ts := *c.TimeSlicing
		ts.Resources = slices.Clone(ts.Resources)
		n.TimeSlicing = &ts
	}
}

// Overrides are settings the plugin takes from its command line or
// environment; they win over the config file, as in the plugin. An empty
// field is unset.
type Overrides struct {
	// MIGStrategy is --mig-strategy / MIG_STRATEGY.
	MIGStrategy string
	// DeviceIDStrategy is --device-id-strategy / DEVICE_ID_STRATEGY.
	DeviceIDStrategy string
	// AllocationPolicy is --shared-devices-allocation-policy /
	// SHARED_DEVICES_ALLOCATION_POLICY.
	AllocationPolicy string
}

// Environment variables of the device plugin that Overrides mirror.
const (
	EnvMIGStrategy      = "MIG_STRATEGY"
	EnvDeviceIDStrategy = "DEVICE_ID_STRATEGY"
	EnvAllocationPolicy = "SHARED_DEVICES_ALLOCATION_POLICY"
)

// OverridesFromEnv reads the plugin's environment variables through lookup
// (os.LookupEnv, or a lookup over the plugin container's env). Empty values
// count as unset.
func OverridesFromEnv(lookup func(string) (string, bool)) Overrides {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	return Overrides{
		MIGStrategy:      get(EnvMIGStrategy),
		DeviceIDStrategy: get(EnvDeviceIDStrategy),
		AllocationPolicy: get(EnvAllocationPolicy),
	}
}

// Option changes how Parse and Load read a file.
type Option func(*options)

type options struct {
	overrides    Overrides
	customRename bool
}

// WithOverrides applies the plugin's command-line flags or environment on top
// of the file.
func WithOverrides(o Overrides) Option { return func(p *options) { p.overrides = o } }

// WithCustomRename declares that the node's device plugin honours
// sharing.timeSlicing.resources[].rename (a patched build whose
// DisableResourceNamingInConfig is a no-op). Without it a custom rename is
// ErrUnsupported, because the stock plugin ignores it.
func WithCustomRename() Option { return func(p *options) { p.customRename = true } }

// Load reads and parses the config file at path. A missing file is an error
// that says so and wraps fs.ErrNotExist.
func Load(path string, opts ...Option) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("device plugin config file %s is missing: %w", path, err)
		}
		return nil, fmt.Errorf("device plugin config file %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("device plugin config file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{Path: path, Fields: []*FieldError{{Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}}}
	}
	cfg, err := Parse(data, opts...)
	if e := (*Error)(nil); errors.As(err, &e) {
		e.Path = path
	}
	return cfg, err
}

// Parse parses a config file's contents (YAML or JSON). An empty file yields
// the defaults, as in the plugin. On error it returns a nil Config and an
// *Error.
func Parse(data []byte, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{opts: o, cfg: Defaults()}
	p.parse(data)
	p.applyOverrides()
	if len(p.errs) > 0 {
		return nil, &Error{Fields: p.errs}
	}
	return p.cfg, nil
}

type parser struct {
	opts options
	cfg  *Config
	errs []*FieldError
}

func (p *parser) invalid(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) unsupported(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Unsupported: true})
}

func (p *parser) parse(data []byte) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		p.invalid("", "not valid YAML: %v", err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return // empty document
		}
		p.invalid("", "not valid YAML: %v", err)
		return
	}
	if root == nil {
		return
	}
	top, ok := root.(map[string]any)
	if !ok {
		p.invalid("", "must be a mapping, got %s", kind(root))
		return
	}

	if v, _, ok := foldGet(top, "version"); ok && v != nil {
		s, ok := v.(string)
		switch {
		case !ok:
			p.invalid("version", "must be a string, got %s", kind(v))
			return
		case s != "" && s != Version:
			p.invalid("version", "unknown version %q (only %s is supported)", s, Version)
			return
		}
	}
	if v, k, ok := foldGet(top, "flags"); ok {
		p.flags(k, v)
	}
	if v, k, ok := foldGet(top, "resources"); ok {
		p.resources(k, v)
	}
	if v, k, ok := foldGet(top, "sharing"); ok {
		p.sharing(k, v)
	}
}

func (p *parser) flags(field string, v any) {
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	// A setting the command line or environment overrides is not validated,
	// as in the plugin, which replaces it before validating.
	if s, f, ok := p.optString(m, field, "migStrategy"); ok && p.opts.overrides.MIGStrategy == "" {
		if ms, ok := migStrategy(s); ok {
			p.cfg.MIGStrategy = ms
		} else {
			p.invalid(f, "unknown MIG strategy %q (want none, single or mixed)", s)
		}
	}
	p.optBool(m, field, "failOnInitError")
	p.optString(m, field, "nvidiaDriverRoot")
	v, k, ok := foldGet(m, "plugin")
	if !ok {
		return
	}
	field += "." + k
	pm, ok := p.object(field, v)
	if !ok {
		return
	}
	p.optBool(pm, field, "passDeviceSpecs")
	for _, k := range []string{"cdiAnnotationPrefix", "nvidiaCTKPath", "containerDriverRoot"} {
		p.optString(pm, field, k)
	}
	if v, k, ok := foldGet(pm, "deviceListStrategy"); ok && v != nil {
		p.deviceListStrategy(field+"."+k, v)
	}
	if s, f, ok := p.optString(pm, field, "deviceIDStrategy"); ok && p.opts.overrides.DeviceIDStrategy == "" {
		if ds, ok := deviceIDStrategy(s); ok {
			p.cfg.DeviceIDStrategy = ds
		} else {
			p.invalid(f, "unknown device ID strategy %q (want uuid or index)", s)
		}
	}
	if s, f, ok := p.optString(pm, field, "sharedDevicesAllocationPolicy"); ok && p.opts.overrides.AllocationPolicy == "" {
		if ap, ok := allocationPolicy(s); ok {
			p.cfg.AllocationPolicy = ap
		} else {
			p.invalid(f, "unknown allocation policy %q (want distributed, packed or spread)", s)
		}
	}
}

var deviceListStrategies = []string{"envvar", "volume-mounts", "cdi-annotations", "cdi-cri"}

func (p *parser) deviceListStrategy(field string, v any) {
	var vals []string
	switch t := v.(type) {
	case string:
		vals = []string{t}
	case []any:
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				p.invalid(fmt.Sprintf("%s[%d]", field, i), "must be a string, got %s", kind(e))
				return
			}
			vals = append(vals, s)
		}
	default:
		p.invalid(field, "must be a string or a list of strings, got %s", kind(v))
		return
	}
	for _, s := range vals {
		if !slices.Contains(deviceListStrategies, s) {
			p.invalid(field, "unknown device list strategy %q (want one of %s)", s, strings.Join(deviceListStrategies, ", "))
		}
	}
}

// resources is the top-level resources section: custom resource names and
// device-name patterns.
func (p *parser) resources(field string, v any) {
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	for _, k := range sortedKeys(m) {
		if l, ok := m[k].([]any); ok && len(l) > 0 {
			p.unsupported(field+"."+k, "custom resource naming is ignored by the stock device plugin and cannot be modelled by gpuslice")
		}
	}
}

func (p *parser) applyOverrides() {
	o := p.opts.overrides
	if o.MIGStrategy != "" {
		if ms, ok := migStrategy(o.MIGStrategy); ok {
			p.cfg.MIGStrategy = ms
		} else {
			p.invalid("--mig-strategy ("+EnvMIGStrategy+")", "unknown MIG strategy %q (want none, single or mixed)", o.MIGStrategy)
		}
	}
	if o.DeviceIDStrategy != "" {
		if ds, ok := deviceIDStrategy(o.DeviceIDStrategy); ok {
			p.cfg.DeviceIDStrategy = ds
		} else {
			p.invalid("--device-id-strategy ("+EnvDeviceIDStrategy+")", "unknown device ID strategy %q (want uuid or index)", o.DeviceIDStrategy)
		}
	}
	if o.AllocationPolicy != "" {
		if ap, ok := allocationPolicy(o.AllocationPolicy); ok {
			p.cfg.AllocationPolicy = ap
		} else {
			p.invalid("--shared-devices-allocation-policy ("+EnvAllocationPolicy+")", "unknown allocation policy %q (want distributed, packed or spread)", o.AllocationPolicy)
		}
	}
}

func migStrategy(s string) (topology.MIGStrategy, bool) {
	switch ms := topology.MIGStrategy(s); ms {
	case topology.MIGStrategyNone, topology.MIGStrategySingle, topology.MIGStrategyMixed:
		return ms, true
	}
	return "", false
}

func deviceIDStrategy(s string) (topology.DeviceIDStrategy, bool) {
	switch ds := topology.DeviceIDStrategy(s); ds {
	case topology.DeviceIDUUID, topology.DeviceIDIndex:
		return ds, true
	}
	return "", false
}

// allocationPolicy accepts the plugin's policies: distributed and packed
// (v0.20.0), spread (main branch).
func allocationPolicy(s string) (topology.AllocationPolicy, bool) {
	switch ap := topology.AllocationPolicy(s); ap {
	case topology.PolicyDistributed, topology.PolicyPacked, topology.PolicySpread:
		return ap, true
	}
	return "", false
}

// object checks that v is a mapping; null counts as an empty one.
