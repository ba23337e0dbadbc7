//! End-to-end tests over loopback sockets (harness arriving).
