// Package kafka is Herald's Kafka transport: the consumer that turns
// TActivityNotificationMessages into RequestNotification commands, its dead
// letters, and the embedded broker of dev mode.
package kafka
