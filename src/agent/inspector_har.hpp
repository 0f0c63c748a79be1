// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) export and import of the
// inspector's exchanges (issue 20). An exported entry carries what an import needs to make it
// an exchange again, so export -> import -> export gives the same entries (ids aside): the
// request and final response heads as they were, the bodies as they came (chunk framing
// removed; text, or base64 with "encoding": "base64"), the wire sizes, the times; and, as
// custom fields, "_id", "_tunnel_name", "_local" (where a replay goes) and "_replay_of".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "agent/inspector.hpp"
#include "common/result.hpp"

namespace tunnel::agent {

// {"log": {...}} with one entry per exchange, in the given order. Header fields named in
// options.redact are masked unless `redact` is false.
std::string to_har(const std::vector<const Exchange*>& exchanges, const InspectorOptions& options,
                   bool redact);

// The entries of a HAR document as exchanges (no ids yet), bodies cut at `body_cap`.
// `default_local` is where entries without "_local" replay to ("" leaves it empty). The error
// names the first entry and field that is wrong.
common::Result<std::vector<Exchange>> from_har(std::string_view har, std::string_view default_local,
                                               std::size_t body_cap);

}  // namespace tunnel::agent
