package driver

import (
	"encoding/json"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// TestRecordsAsTheReaperReadsThem: the reaper finds volumes kept after
// DeleteVolume from the controller's records through package volumeid:
// the key and the fields it reads must stay the controller's.
func TestRecordsAsTheReaperReadsThem(t *testing.T) {
	for _, p := range []string{"", "pvs/pvc-1", "a/b.c/d_e-f"} {
		if recordKey(p) != volumeid.RecordKey(p) {
			t.Errorf("recordKey(%q) = %q, volumeid.RecordKey = %q", p, recordKey(p), volumeid.RecordKey(p))
		}
		if got, ok := volumeid.RecordPrefix(recordKey(p)); !ok || got != p {
			t.Errorf("RecordPrefix(%q) = %q, %v", recordKey(p), got, ok)
		}
	}
	b, _ := json.Marshal(volRecord{Version: 1, Prefix: "pvs/a", Endpoint: "http://h:1", Region: "r", Retain: true, ReadOnlyView: true, Deleted: true})
	var r volumeid.Record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r != (volumeid.Record{Version: 1, Prefix: "pvs/a", Endpoint: "http://h:1", Region: "r", Retain: true, ReadOnlyView: true, Deleted: true}) {
		t.Fatalf("the reaper reads %+v from %s", r, b)
	}
}
