package format_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

func samplePing() *format.Ping {
	return &format.Ping{
		HostID: 0x1234, Node: "node-a", Start: time.Unix(1700000000, 5).UTC(), Seq: 7,
		Expiry: 3 * time.Minute, Oldest: time.Unix(1700000100, 0).UTC(), FeedFrom: 5,
		Changes: []format.Change{{Seq: 5, Inode: 9, Version: 2}, {Seq: 7, Inode: 1, Version: 40}},
	}
}

func TestPingRoundTrip(t *testing.T) {
	for _, p := range []*format.Ping{samplePing(), {HostID: 1, Seq: 1, FeedFrom: 1, Expiry: time.Second, ReadOnly: true}} {
		obj, err := format.EncodePing(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.DecodePing(obj)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
		}
	}
}

func TestPingRefusesBadFields(t *testing.T) {
	cases := map[string]func(p *format.Ping){
		"zero host":          func(p *format.Ping) { p.HostID = 0 },
		"zero seq":           func(p *format.Ping) { p.Seq = 0 },
		"feed after seq":     func(p *format.Ping) { p.FeedFrom = p.Seq + 2 },
		"zero expiry":        func(p *format.Ping) { p.Expiry = 0 },
		"change before feed": func(p *format.Ping) { p.Changes[0].Seq = 4 },
		"change after seq":   func(p *format.Ping) { p.Changes[1].Seq = 8 },
		"changes unordered":  func(p *format.Ping) { p.Changes[0], p.Changes[1] = p.Changes[1], p.Changes[0] },
		"change inode 0":     func(p *format.Ping) { p.Changes[0].Inode = 0 },
		"long node name":     func(p *format.Ping) { p.Node = string(make([]byte, 254)) },
	}
	for name, mutate := range cases {
		p := samplePing()
		mutate(p)
		if _, err := format.EncodePing(p); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("%s: EncodePing = %v, want ErrCorrupt", name, err)
		}
	}
	obj, _ := format.EncodePing(samplePing())
	for i := range obj {
		bad := append([]byte(nil), obj...)
		bad[i] ^= 0x40
		if _, err := format.DecodePing(bad); err == nil {
			t.Fatalf("flipping byte %d was not detected", i)
		}
	}
	for n := 0; n < len(obj); n++ {
		if _, err := format.DecodePing(obj[:n]); err == nil {
			t.Fatalf("truncation to %d bytes was not detected", n)
		}
	}
}

func FuzzDecodePing(f *testing.F) {
	obj, _ := format.EncodePing(samplePing())
	f.Add(obj)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := format.DecodePing(b)
		if err != nil {
			return
		}
		again, err := format.EncodePing(p)
		if err != nil {
			t.Fatalf("decoded ping does not re-encode: %v", err)
		}
		if _, err := format.DecodePing(again); err != nil {
			t.Fatalf("re-encoded ping does not decode: %v", err)
		}
	})
}
