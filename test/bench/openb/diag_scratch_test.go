package openb

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
)

func TestScratchDiag(t *testing.T) {
	if os.Getenv("DIAG") == "" {
		t.Skip()
	}
	nodes, _ := ReadNodes(os.Getenv("DIAG_NODES"))
	pods, _ := ReadPods("../../../../shared/data/openb/csv/openb_pod_list_default.csv")
	fs, err := selectPolicies(os.Getenv("DIAG"), os.Getenv("DIAG_CFG"), 100)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewCluster(nodes)
	work, _ := Workload(pods, c.TotalMilli, 42, 1.3)
	pol, err := fs[0].New(context.Background(), nodes, pods, rand.New(rand.NewPCG(42, 1)))
	if err != nil {
		t.Fatal(err)
	}
	arrived := int64(0)
	failed := map[string]int{}
	for i := range work {
		p := &work[i]
		ni, gpus, ok, err := pol.Schedule(context.Background(), c, p)
		if err != nil {
			t.Fatal(err)
		}
		kind := "cpu"
		switch {
		case p.NumGPU == 0:
		case p.Sharing():
			kind = "share"
		default:
			kind = "whole" + string(rune('0'+p.NumGPU))
		}
		if ok {
			if err := c.Bind(p, ni, gpus); err != nil {
				t.Fatal(err)
			}
		} else {
			failed[kind]++
		}
		arrived += p.GPURequest()
		if float64(arrived) >= float64(c.TotalMilli) {
			break
		}
	}
	byModel := map[string][3]float64{}
	for _, n := range c.Nodes {
		for _, g := range n.GPULeft {
			v := byModel[n.Model]
			switch {
			case n.CPULeft < 4000:
				v[0] += float64(g) / 1000
			case g == MilliPerGPU:
				v[2] += float64(g) / 1000
			default:
				v[1] += float64(g) / 1000
			}
			byModel[n.Model] = v
		}
	}
	t.Logf("%s unalloc %.2f%% [cpu<4 cores, partial, whole] by model %v failed %v", os.Getenv("DIAG"), c.UnallocatedGPUPct(), byModel, failed)
}
