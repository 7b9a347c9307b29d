package driver

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestRegistration plays the kubelet's plugin watcher: GetInfo, then
// NotifyRegistrationStatus, checking the bytes on the wire against the
// field numbers of k8s.io/kubelet's pluginregistration/v1 api.proto.
func TestRegistration(t *testing.T) {
	dir := t.TempDir()
	r := &Registrar{DriverName: "csi.s3gfs.io", CSIEndpoint: "/var/lib/kubelet/plugins/csi.s3gfs.io/csi.sock"}
	go r.Serve(dir)
	defer r.Stop()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "csi.s3gfs.io-reg.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info := newRegMessage("PluginInfo")
	if err := conn.Invoke(ctx, "/pluginregistration.Registration/GetInfo", newRegMessage("InfoRequest"), info, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	got := map[protowire.Number][]string{}
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if typ != protowire.BytesType {
			t.Fatalf("field %d has wire type %d", n, typ)
		}
		v, m := protowire.ConsumeBytes(b[l:])
		got[n] = append(got[n], string(v))
		b = b[l+m:]
	}
	want := map[protowire.Number][]string{1: {"CSIPlugin"}, 2: {"csi.s3gfs.io"}, 3: {r.CSIEndpoint}, 4: {"1.0.0"}}
	for n, w := range want {
		if len(got[n]) != len(w) || got[n][0] != w[0] {
			t.Errorf("field %d = %q, want %q", n, got[n], w)
		}
	}
	st := newRegMessage("RegistrationStatus")
	st.Set(st.Descriptor().Fields().ByNumber(1), protoreflect.ValueOfBool(true))
	if err := conn.Invoke(ctx, "/pluginregistration.Registration/NotifyRegistrationStatus", st, newRegMessage("RegistrationStatusResponse")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Registered(); !ok {
		t.Error("registration status not recorded")
	}
}
