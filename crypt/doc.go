// Package crypt will hold hastor's encryption at rest: AES-XTS over the
// pooled data-path buffers and LUKS2-compatible volume headers.
//
// Nothing is implemented yet; see the project issues for the plan.
package crypt
