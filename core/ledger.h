// A hash-chained, append-only JSONL ledger: each line is a JSON object holding its sequence number,
// its time, the previous line's hash and its own hash (sha256 of the line's canonical JSON without
// "hash"), so a line edited, removed or inserted after it was written is detected, naming the line.
// Theories (registrations, reveals, reviews) and hackathon submissions are recorded in one.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// The previous-hash of the first line.
extern const char* const kLedgerGenesis;

// Every entry of the ledger at `path` (a missing file is an empty ledger), each verified: valid
// JSON, seq = its position, prev = the hash of the line before, hash = sha256 of its canonical
// form. UserError "path:line: ..." at the first line that fails.
std::vector<nlohmann::json> read_ledger(const std::string& path);

// Appends `record` (a JSON object; it may not hold seq, time, prev or hash) as the next line, under
// an exclusive lock on the file, after verifying the whole chain (a broken ledger is never
// extended). The line is written whole and fsync'ed. Returns the entry as written.
nlohmann::json append_ledger(const std::string& path, const nlohmann::json& record);

// sha256 of an entry's canonical form (keys sorted, no spaces), "hash" left out.
std::string ledger_entry_hash(const nlohmann::json& entry);

}  // namespace posttrain
