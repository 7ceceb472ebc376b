// Keeps a truncated page file from killing the process with SIGBUS.
#pragma once

#include <cstddef>

namespace token_shadow {

// Registers a mapping of `size` bytes at `base`; returns a handle (or -1 when
// the table is full: the mapping then simply is not guarded).
int GuardMapping(void* base, size_t size);
void UnguardMapping(int handle);
// True once an access to the mapping faulted and the page was replaced.
bool MappingFaulted(int handle);

}  // namespace token_shadow
