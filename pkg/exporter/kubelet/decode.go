package kubelet

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The parts of the v1 API's messages the exporter reads, by field number
// (k8s.io/kubelet/pkg/apis/podresources/v1/api.proto):
//
//	ListPodResourcesResponse     { repeated PodResources pod_resources = 1; }
//	AllocatableResourcesResponse { repeated ContainerDevices devices = 1; ... }
//	PodResources       { string name = 1; string namespace = 2; repeated ContainerResources containers = 3; ... }
//	ContainerResources { string name = 1; repeated ContainerDevices devices = 2; ... }
//	ContainerDevices   { string resource_name = 1; repeated string device_ids = 2; TopologyInfo topology = 3; }
//
// Every other field (CPU IDs, memory, topology, dynamic resources, fields
// of later API versions) is skipped, as protobuf skips unknown fields.
const (
	fieldListPodResources protowire.Number = 1

	fieldAllocatableDevices protowire.Number = 1

	fieldPodName       protowire.Number = 1
	fieldPodNamespace  protowire.Number = 2
	fieldPodContainers protowire.Number = 3

	fieldContainerName    protowire.Number = 1
	fieldContainerDevices protowire.Number = 2

	fieldDevicesResourceName protowire.Number = 1
	fieldDevicesIDs          protowire.Number = 2
)

type podResources struct {
	name, namespace string
	containers      []containerResources
}

type containerResources struct {
	name    string
	devices []containerDevices
}

type containerDevices struct {
	resourceName string
	deviceIDs    []string
}

// decodeListResponse decodes a ListPodResourcesResponse.
func decodeListResponse(b []byte) ([]podResources, error) {
	var pods []podResources
	err := fields(b, "ListPodResourcesResponse", func(num protowire.Number, v []byte) error {
		if num != fieldListPodResources {
			return nil
		}
		p, err := decodePodResources(v)
		if err != nil {
			return fmt.Errorf("pod_resources[%d]: %w", len(pods), err)
		}
		pods = append(pods, p)
		return nil
	})
	return pods, err
}

// decodeAllocatableResponse decodes an AllocatableResourcesResponse's
// devices.
func decodeAllocatableResponse(b []byte) ([]containerDevices, error) {
	var devs []containerDevices
	err := fields(b, "AllocatableResourcesResponse", func(num protowire.Number, v []byte) error {
		if num != fieldAllocatableDevices {
			return nil
		}
		d, err := decodeContainerDevices(v)
		if err != nil {
			return fmt.Errorf("devices[%d]: %w", len(devs), err)
		}
		devs = append(devs, d)
		return nil
	})
	return devs, err
}

func decodePodResources(b []byte) (podResources, error) {
	var p podResources
	err := fields(b, "PodResources", func(num protowire.Number, v []byte) error {
		var err error
		switch num {
		case fieldPodName:
			p.name, err = str(v, "name")
		case fieldPodNamespace:
			p.namespace, err = str(v, "namespace")
		case fieldPodContainers:
			var c containerResources
			if c, err = decodeContainerResources(v); err != nil {
				return fmt.Errorf("containers[%d]: %w", len(p.containers), err)
			}
			p.containers = append(p.containers, c)
		}
		return err
	})
	return p, err
}

func decodeContainerResources(b []byte) (containerResources, error) {
	var c containerResources
	err := fields(b, "ContainerResources", func(num protowire.Number, v []byte) error {
		var err error
		switch num {
		case fieldContainerName:
			c.name, err = str(v, "name")
		case fieldContainerDevices:
			var d containerDevices
			if d, err = decodeContainerDevices(v); err != nil {
				return fmt.Errorf("devices[%d]: %w", len(c.devices), err)
			}
			c.devices = append(c.devices, d)
		}
		return err
	})
	return c, err
}

func decodeContainerDevices(b []byte) (containerDevices, error) {
	var d containerDevices
	err := fields(b, "ContainerDevices", func(num protowire.Number, v []byte) error {
		switch num {
		case fieldDevicesResourceName:
			s, err := str(v, "resource_name")
			d.resourceName = s
			return err
		case fieldDevicesIDs:
			s, err := str(v, "device_ids")
			d.deviceIDs = append(d.deviceIDs, s)
			return err
		}
		return nil
	})
	return d, err
}

// fields calls fn with each length-delimited field of the message b (the
// wire type of every field this package reads). Fields of other wire
// types are skipped, as protobuf does with a field whose wire type does not
// match its declaration; a truncated or malformed message is an error.
func fields(b []byte, message string, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("malformed %s: %w", message, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("malformed %s: field %d: %w", message, num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("malformed %s: field %d: %w", message, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// str decodes a proto3 string field, which must be UTF-8.
func str(v []byte, field string) (string, error) {
	if !utf8.Valid(v) {
		return "", fmt.Errorf("%s: invalid UTF-8", field)
	}
	return string(v), nil
}
