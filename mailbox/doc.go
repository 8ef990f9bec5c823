// Package mailbox holds the queues that carry messages to a consumer: a
// lock-free multi-producer single-consumer queue, and the process mailbox on
// top of it (park and wake without lost wake-ups, receive with a context,
// selective receive that keeps unmatched messages queued in order, and
// encoded messages that the receiver decodes itself: PushEncoded, and
// PushEncodedOwned for large ones); and Waiter, one wait for one wake-up
// that a network loop can hand over without waking a thread.
package mailbox
