package driver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"k8s.io/klog/v2"
)

// The kubelet's plugin registration service (k8s.io/kubelet
// pkg/apis/pluginregistration/v1, package "pluginregistration"): the
// kubelet watches its plugins_registry directory for sockets, calls
// GetInfo on each, and for a CSIPlugin talks CSI to the endpoint it names.
// This is what the node-driver-registrar sidecar does; the node plugin can
// serve it itself (--registration-dir) where that sidecar is not at hand.
// The four messages are built from their descriptor here rather than
// importing k8s.io/kubelet and its dependencies: the wire format is the
// field numbers below, which are the API.
var regMessages = func() map[string]protoreflect.MessageDescriptor {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	boolean := descriptorpb.FieldDescriptorProto_TYPE_BOOL.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, n int32, t *descriptorpb.FieldDescriptorProto_Type, l *descriptorpb.FieldDescriptorProto_Label) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: t, Label: l, JsonName: proto.String(name)}
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name: proto.String("s3gfs/pluginregistration/api.proto"), Package: proto.String("pluginregistration"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("PluginInfo"), Field: []*descriptorpb.FieldDescriptorProto{
				field("type", 1, str, opt), field("name", 2, str, opt), field("endpoint", 3, str, opt), field("supported_versions", 4, str, rep)}},
			{Name: proto.String("RegistrationStatus"), Field: []*descriptorpb.FieldDescriptorProto{
				field("plugin_registered", 1, boolean, opt), field("error", 2, str, opt)}},
			{Name: proto.String("RegistrationStatusResponse")},
			{Name: proto.String("InfoRequest")},
		},
	}
	f, err := protodesc.NewFile(fd, nil)
	if err != nil {
		panic(err)
	}
	out := map[string]protoreflect.MessageDescriptor{}
	for i := 0; i < f.Messages().Len(); i++ {
		m := f.Messages().Get(i)
		out[string(m.Name())] = m
	}
	return out
}()

func newRegMessage(name string) *dynamicpb.Message { return dynamicpb.NewMessage(regMessages[name]) }

// Registrar serves the kubelet plugin registration service for the CSI
// node plugin.
type Registrar struct {
	DriverName string
	// CSIEndpoint is the node plugin's CSI socket path as the kubelet sees
	// it (on the host).
	CSIEndpoint string

	mu         sync.Mutex
	registered bool
	lastError  string
	srv        *grpc.Server
}

// Registered reports what the kubelet last said about the registration.
func (r *Registrar) Registered() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered, r.lastError
}

// SocketPath is where Serve listens in dir (the kubelet's plugins_registry).
func (r *Registrar) SocketPath(dir string) string {
	return filepath.Join(dir, r.DriverName+"-reg.sock")
}

// Serve listens in dir, replacing a stale socket, until Stop.
func (r *Registrar) Serve(dir string) error {
	path := r.SocketPath(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.srv = grpc.NewServer()
	r.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "pluginregistration.Registration",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "GetInfo", Handler: r.getInfo},
			{MethodName: "NotifyRegistrationStatus", Handler: r.notify},
		},
		Metadata: "api.proto",
	}, r)
	srv := r.srv
	r.mu.Unlock()
	klog.InfoS("serving kubelet plugin registration", "socket", path, "csiEndpoint", r.CSIEndpoint)
	return srv.Serve(l)
}

// Stop stops serving.
func (r *Registrar) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (r *Registrar) getInfo(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	if err := dec(newRegMessage("InfoRequest")); err != nil {
		return nil, err
	}
	m := newRegMessage("PluginInfo")
	fs := m.Descriptor().Fields()
	m.Set(fs.ByName("type"), protoreflect.ValueOfString("CSIPlugin"))
	m.Set(fs.ByName("name"), protoreflect.ValueOfString(r.DriverName))
	m.Set(fs.ByName("endpoint"), protoreflect.ValueOfString(r.CSIEndpoint))
	l := m.Mutable(fs.ByName("supported_versions")).List()
	l.Append(protoreflect.ValueOfString("1.0.0"))
	return m, nil
}

func (r *Registrar) notify(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := newRegMessage("RegistrationStatus")
	if err := dec(in); err != nil {
		return nil, err
	}
	fs := in.Descriptor().Fields()
	ok, msg := in.Get(fs.ByName("plugin_registered")).Bool(), in.Get(fs.ByName("error")).String()
	r.mu.Lock()
	r.registered, r.lastError = ok, msg
	r.mu.Unlock()
	if ok {
		klog.InfoS("registered with the kubelet", "driver", r.DriverName)
	} else {
		klog.ErrorS(fmt.Errorf("%s", msg), "the kubelet refused the registration", "driver", r.DriverName)
	}
	return newRegMessage("RegistrationStatusResponse"), nil
}
