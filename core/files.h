// File helpers: whole-file reads with clear errors, atomic writes, sha256 digests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace posttrain {

// Reads a whole file; UserError naming the path if it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes to "<path>.tmp" then renames, so a reader never sees a half-written file.
void write_file_atomic(const std::string& path, std::string_view content);

// Lower-case hex sha256 of bytes / of a file's contents (streamed, so large files are fine).
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);

// Training allocates and frees tensors of tens of MB every step (embedding gradients, LM-head
// chunks, optimizer temporaries). glibc serves those with fresh mmaps that the kernel zero-fills page
// by page: on CPU half the time went to page faults. This keeps them on the (untrimmed) heap.
// Call once at the start of main().
void keep_large_allocations_on_heap();

}  // namespace posttrain
