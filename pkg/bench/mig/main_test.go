package mig

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestMainCommand(t *testing.T) {
	parted := sharedDataFile(t, "mig-parted-config-default.yaml")
	var out bytes.Buffer
	err := Main(context.Background(), []string{"--mig-parted", parted, "--scheduler-config", schedulerConfig, "--seeds", "1", "--pods", "80", "--json"}, &out)
	if err != nil {
		t.Fatalf("Main: %v\n%s", err, out.String())
	}
	results, summaries := 0, 0
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		if m["summary"] == true {
			summaries++
		} else {
			results++
		}
	}
	if results != 4 || summaries != 4 {
		t.Errorf("%d result and %d summary JSON lines, want 4 and 4", results, summaries)
	}
	for _, want := range []string{"all-balanced = 2 x 1g.5gb + 2g.10gb + 3g.20gb", "kube-MostAllocated", "target (>= 30% fewer"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())

	for _, args := range [][]string{{"--seeds", "x"}, {"--policies", "nope", "--mig-parted", parted}, {"--pods", "0"}, {"extra"}} {
		if err := Main(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("Main(%v) succeeded", args)
		}
	}
}
