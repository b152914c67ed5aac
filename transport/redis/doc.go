// Package redis is the subscriber end of seed 000's WebSocket emitter.
// Producers that host no WebSocket server publish {topic, data, destination}
// on a Redis pub/sub channel; every Herald instance subscribes to it and
// pushes each message to its own sessions. Delivery is best effort: a message
// published while an instance is not subscribed never reaches that
// instance's sessions, and a malformed one is counted and dropped.
package redis
