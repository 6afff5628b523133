"""Library: a ConnectRPC service that lends books, for browsers and gRPC clients alike."""
