package kubelet

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// TestFieldNumbers checks the field numbers this package decodes against
// the generated code of the API (k8s.io/kubelet/pkg/apis/podresources/v1).
func TestFieldNumbers(t *testing.T) {
	for _, tc := range []struct {
		msg   proto.Message
		field protoreflect.Name
		want  protowire.Number
	}{
		{&podresourcesv1.ListPodResourcesResponse{}, "pod_resources", fieldListPodResources},
		{&podresourcesv1.AllocatableResourcesResponse{}, "devices", fieldAllocatableDevices},
		{&podresourcesv1.PodResources{}, "name", fieldPodName},
		{&podresourcesv1.PodResources{}, "namespace", fieldPodNamespace},
		{&podresourcesv1.PodResources{}, "containers", fieldPodContainers},
		{&podresourcesv1.ContainerResources{}, "name", fieldContainerName},
		{&podresourcesv1.ContainerResources{}, "devices", fieldContainerDevices},
		{&podresourcesv1.ContainerDevices{}, "resource_name", fieldDevicesResourceName},
		{&podresourcesv1.ContainerDevices{}, "device_ids", fieldDevicesIDs},
	} {
		md := tc.msg.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(tc.field)
		if fd == nil {
			t.Errorf("%s has no field %s", md.FullName(), tc.field)
			continue
		}
		if fd.Number() != tc.want {
			t.Errorf("%s.%s is field %d, decoded as %d", md.FullName(), tc.field, fd.Number(), tc.want)
		}
		if k := fd.Kind(); k != protoreflect.StringKind && k != protoreflect.MessageKind {
			t.Errorf("%s.%s is a %s: not length-delimited", md.FullName(), tc.field, k)
		}
	}
}

// fullResponse uses every field of the API, known to this package or not.
func fullResponse() *podresourcesv1.ListPodResourcesResponse {
	share := "s-1"
	topo := &podresourcesv1.TopologyInfo{Nodes: []*podresourcesv1.NUMANode{{ID: 0}, {ID: 1}}}
	return &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{
		{
			Name: "train-0", Namespace: "team-a", CpuIds: []int64{4, 5},
			Memory: []*podresourcesv1.ContainerMemory{{MemoryType: "hugepages-2Mi", Size: 1 << 30, Topology: topo}},
			Containers: []*podresourcesv1.ContainerResources{
				{
					Name: "trainer", CpuIds: []int64{2, 3},
					Devices: []*podresourcesv1.ContainerDevices{
						{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-a", "GPU-b"}, Topology: topo},
						{ResourceName: "example.com/nic", DeviceIds: []string{"0000:3b:00.2"}},
					},
					Memory: []*podresourcesv1.ContainerMemory{{MemoryType: "memory", Size: 1 << 20}},
					DynamicResources: []*podresourcesv1.DynamicResource{{
						ClaimName: "c", ClaimNamespace: "team-a",
						ClaimResources: []*podresourcesv1.ClaimResource{{
							CdiDevices: []*podresourcesv1.CDIDevice{{Name: "vendor.com/gpu=0"}}, DriverName: "d", PoolName: "p", DeviceName: "g0", ShareId: &share,
						}},
					}},
				},
				{Name: "sidecar"},
			},
		},
		{Name: "ünïcode-pod", Namespace: "default"},
	}}
}

func TestDecodeListMatchesProtobuf(t *testing.T) {
	raw, err := proto.Marshal(fullResponse())
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeListResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []podResources{
		{name: "train-0", namespace: "team-a", containers: []containerResources{
			{name: "trainer", devices: []containerDevices{
				{resourceName: "nvidia.com/gpu", deviceIDs: []string{"GPU-a", "GPU-b"}},
				{resourceName: "example.com/nic", deviceIDs: []string{"0000:3b:00.2"}},
			}},
			{name: "sidecar"},
		}},
		{name: "ünïcode-pod", namespace: "default"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n %+v\nwant\n %+v", got, want)
	}

	empty, err := decodeListResponse(nil)
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty response: %v, %v", empty, err)
	}
}

func TestDecodeAllocatable(t *testing.T) {
	raw, err := proto.Marshal(&podresourcesv1.AllocatableResourcesResponse{
		Devices: []*podresourcesv1.ContainerDevices{
			{ResourceName: "nvidia.com/gpu.shared", DeviceIds: []string{"GPU-a::0", "GPU-a::1"}},
			{ResourceName: "nvidia.com/mig-1g.10gb", DeviceIds: []string{"MIG-x"}},
		},
		CpuIds: []int64{0, 1, 2},
		Memory: []*podresourcesv1.ContainerMemory{{MemoryType: "memory", Size: 1 << 34}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAllocatableResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []containerDevices{
		{resourceName: "nvidia.com/gpu.shared", deviceIDs: []string{"GPU-a::0", "GPU-a::1"}},
		{resourceName: "nvidia.com/mig-1g.10gb", deviceIDs: []string{"MIG-x"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

// TestDecodeSkipsUnknownFields decodes messages of a later API version:
// fields of every wire type this package does not know, and a known field
// number with another wire type, are skipped as protobuf skips them.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	str := func(b []byte, num protowire.Number, s string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	msg := func(b []byte, num protowire.Number, m []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, m)
	}
	unknown := func(b []byte) []byte {
		b = protowire.AppendTag(b, 90, protowire.VarintType)
		b = protowire.AppendVarint(b, 1<<40)
		b = protowire.AppendTag(b, 91, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, 7)
		b = protowire.AppendTag(b, 92, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, 7)
		b = str(b, 93, "a later field")
		b = protowire.AppendTag(b, 94, protowire.StartGroupType)
		b = str(b, 1, "inside a group")
		b = protowire.AppendTag(b, 94, protowire.EndGroupType)
		return b
	}
	var dev []byte
	dev = unknown(dev)
	dev = str(dev, fieldDevicesResourceName, "nvidia.com/gpu")
	dev = protowire.AppendTag(dev, fieldDevicesIDs, protowire.VarintType) // wrong wire type: not a device ID
	dev = protowire.AppendVarint(dev, 3)
	dev = str(dev, fieldDevicesIDs, "GPU-a")
	var ctr []byte
	ctr = str(ctr, fieldContainerName, "main")
	ctr = msg(ctr, fieldContainerDevices, dev)
	ctr = unknown(ctr)
	var pod []byte
	pod = unknown(pod)
	pod = str(pod, fieldPodName, "p")
	pod = str(pod, fieldPodNamespace, "ns")
	pod = msg(pod, fieldPodContainers, ctr)
	var resp []byte
	resp = unknown(resp)
	resp = msg(resp, fieldListPodResources, pod)
	resp = unknown(resp)

	got, err := decodeListResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := []podResources{{name: "p", namespace: "ns", containers: []containerResources{
		{name: "main", devices: []containerDevices{{resourceName: "nvidia.com/gpu", deviceIDs: []string{"GPU-a"}}}},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}

	// The generated code agrees.
	var pb podresourcesv1.ListPodResourcesResponse
	if err := proto.Unmarshal(resp, &pb); err != nil {
		t.Fatal(err)
	}
	if d := pb.PodResources[0].Containers[0].Devices[0]; d.ResourceName != "nvidia.com/gpu" || !reflect.DeepEqual(d.DeviceIds, []string{"GPU-a"}) {
		t.Fatalf("protobuf decodes %v", d)
	}
}

// TestDecodeRejectsTruncated cuts a response at every length: each prefix
// either decodes as a shorter message (cut between fields of the top-level
// message) or fails with an error naming the message.
func TestDecodeRejectsTruncated(t *testing.T) {
	raw, err := proto.Marshal(fullResponse())
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for n := range len(raw) {
		_, err := decodeListResponse(raw[:n])
		pbErr := proto.Unmarshal(raw[:n], &podresourcesv1.ListPodResourcesResponse{})
		if (err == nil) != (pbErr == nil) {
			t.Fatalf("prefix of %d bytes: decoded with error %v, protobuf with %v", n, err, pbErr)
		}
		if err == nil {
			continue
		}
		failed++
		if !strings.Contains(err.Error(), "malformed ListPodResourcesResponse") && !strings.Contains(err.Error(), "pod_resources[") {
			t.Fatalf("prefix of %d bytes: unclear error %q", n, err)
		}
	}
	if failed == 0 {
		t.Fatal("no prefix failed")
	}
	_, err = decodeListResponse(raw[:len(raw)-1])
	if err == nil || err.Error() != "malformed ListPodResourcesResponse: field 1: unexpected EOF" {
		t.Fatalf("response cut in its last pod: %v", err)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"field number 0":      {append(tag(0, protowire.VarintType), 1), "malformed ListPodResourcesResponse"},
		"length past end":     {append(tag(fieldListPodResources, protowire.BytesType), 10, 1, 2), "malformed ListPodResourcesResponse: field 1"},
		"unterminated varint": {append(tag(5, protowire.VarintType), 0x80, 0x80), "malformed ListPodResourcesResponse: field 5"},
		"stray end group":     {tag(7, protowire.EndGroupType), "malformed ListPodResourcesResponse: field 7"},
		"pod cut short inside": {
			protowire.AppendBytes(tag(fieldListPodResources, protowire.BytesType), append(tag(fieldPodNamespace, protowire.BytesType), 10, 'a', 'b')),
			"pod_resources[0]: malformed PodResources: field 2: unexpected EOF",
		},
		"invalid UTF-8": {
			protowire.AppendBytes(tag(fieldListPodResources, protowire.BytesType), protowire.AppendString(tag(fieldPodNamespace, protowire.BytesType), "\xff")),
			"pod_resources[0]: namespace: invalid UTF-8",
		},
	} {
		_, err := decodeListResponse(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
		if proto.Unmarshal(tc.raw, &podresourcesv1.ListPodResourcesResponse{}) == nil {
			t.Errorf("%s: protobuf accepts it", name)
		}
	}
}

// FuzzDecodeList checks the decoder against the generated code: whatever
// protobuf decodes, this package decodes to the same names and devices.
// (The converse does not hold: protobuf also validates the fields this
// package skips, such as the strings of ContainerMemory.)
func FuzzDecodeList(f *testing.F) {
	full, err := proto.Marshal(fullResponse())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte{})
	f.Add(full[:len(full)/2])
	f.Fuzz(func(t *testing.T, raw []byte) {
		var pb podresourcesv1.ListPodResourcesResponse
		if proto.Unmarshal(raw, &pb) != nil {
			return
		}
		got, err := decodeListResponse(raw)
		if err != nil {
			t.Fatalf("protobuf decodes what this package rejects: %v", err)
		}
		var want []podResources
		for _, p := range pb.PodResources {
			pr := podResources{name: p.Name, namespace: p.Namespace}
			for _, c := range p.Containers {
				cr := containerResources{name: c.Name}
				for _, d := range c.Devices {
					cr.devices = append(cr.devices, containerDevices{resourceName: d.ResourceName, deviceIDs: d.DeviceIds})
				}
				pr.containers = append(pr.containers, cr)
			}
			want = append(want, pr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n %+v\nprotobuf\n %+v", got, want)
		}
	})
}
