package openb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadTimedPods(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "pods.csv")
		if err := os.WriteFile(p, []byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pods, err := ReadTimedPods(write("a,1000,1024,1,500,,LS,Running,10,70,20\nb,0,512,0,0,,BE,Pending,5,9,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods[0].Created != 10 || pods[0].Deleted != 70 || pods[0].Scheduled != 20 || pods[0].GPUMilli != 500 ||
		pods[1].Scheduled != -1 || pods[1].Deleted != 9 {
		t.Fatalf("read %+v", pods)
	}
	for body, want := range map[string]string{
		"a,1000,1024,1,500,,LS,Running,10,5,\n":    "before created",
		"a,1000,1024,1,500,,LS,Running,10,50,60\n": "outside its life",
		"a,1000,1024,1,500,,LS,Running,x,50,\n":    "creation_time",
	} {
		if _, err := ReadTimedPods(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}
