// Package channels holds the outbound providers deliveries are sent
// through, such as SMS over a Twilio-compatible Messages API. Each is a
// small concrete type that classifies what its service answers as a
// *domain.ProviderError, so that a retry policy needs to know no provider.
package channels
