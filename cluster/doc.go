// Package cluster will elect the primary node with Raft, move the virtual IP
// addresses to it and stop a node that loses quorum from serving.
//
// Nothing is implemented yet.
package cluster
