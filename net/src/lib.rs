//! Wire codecs, the replica-to-replica transport and the native client library. Decoding never
//! panics on any input. The codecs arrive with the node issue.
