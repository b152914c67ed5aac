package kafka

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DevBroker is the Kafka-protocol broker of dev mode: franz-go's kfake, in
// process, in memory, listening on one address. It is for development and
// tests only: nothing it holds survives a restart.
type DevBroker struct {
	cluster *kfake.Cluster
}

// DevMaxMessageBytes is the largest batch the dev broker accepts, on every
// topic: above MaxMessageBytes, so that an oversized message reaches the
// ingress and its dead-letter topic, as it can with a broker configured for
// large messages, instead of being refused to the producer.
const DevMaxMessageBytes = 16 << 20

// StartDevBroker listens on addr (host:port; port 0 picks a free one) and
// creates topics with the given number of partitions each.
func StartDevBroker(addr string, partitions int32, topics ...string) (*DevBroker, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topics...),
		kfake.AllowAutoTopicCreation(),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(DevMaxMessageBytes)}),
		// kfake binds 127.0.0.1 by default; listen on exactly the address
		// asked for, which is also what it advertises to clients.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
	)
	if err != nil {
		return nil, fmt.Errorf("dev broker on %s: %w", addr, err)
	}
	return &DevBroker{cluster: c}, nil
}

// Addr is the broker's host:port.
func (b *DevBroker) Addr() string { return b.cluster.ListenAddrs()[0] }

// Close stops the broker.
func (b *DevBroker) Close() { b.cluster.Close() }
