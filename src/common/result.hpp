// The one way the project's functions say "this or why not": `Result<T>` holds a value or an
// `Error`, and `Status` (`Result<void>`) holds nothing or an `Error`.
//
// The error is for people: it names the problem and where (the field, the file and line, the
// flag, the peer), and quotes the bad value where that helps. It never holds a secret. Callers
// that add context prefix it (`error.message = "config.yaml: " + error.message`).
//
// Result<T> is Boost.Outcome's `basic_result` with the terminate policy: reading the value of a
// failed result (or the error of a successful one) is a programming error and ends the process
// at once, in every build. Construct from a value or an Error (implicit, both ways), or with
// `success()` for Status. Check with `if (r)` / `r.has_value()`, read with `r.value()` and
// `r.error().message`. Protocol and parser code returns it for untrusted bytes; none of it
// throws.
//
// An Error also has a kind (ErrorKind: internal by default, invalid, not_found, conflict,
// unavailable) for callers that answer differently by kind, such as the REST API's status
// codes; `fail(ErrorKind::kConflict, "...")` sets it.
#pragma once

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <boost/outcome/success_failure.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace tunnel::common {

// What kind of failure an Error is, for callers that answer by kind (the REST API maps it to
// a status code). Few on purpose; the message says the rest.
enum class ErrorKind : std::uint8_t {
  kInternal,     // the default: nothing more is known (a bug, an I/O or database failure)
  kInvalid,      // the input is wrong: a bad value, a malformed request
  kNotFound,     // what was named does not exist
  kConflict,     // it clashes with what exists: a name taken, a unique constraint
  kUnavailable,  // not now: a limit reached, a peer or service down; a retry may succeed
};

struct Error {
  explicit Error(std::string why, ErrorKind what = ErrorKind::kInternal)
      : message(std::move(why)), kind(what) {}
  std::string message;
  ErrorKind kind = ErrorKind::kInternal;
  bool operator==(const Error&) const = default;
};

template <typename T>
using Result = boost::outcome_v2::basic_result<T, Error, boost::outcome_v2::policy::terminate>;

using Status = Result<void>;

// `return success();` from a function returning Status.
inline auto success() {
  return boost::outcome_v2::success();
}

// `return fail("...");` from a function returning any Result (kind kInternal).
inline Error fail(std::string why) {
  return Error(std::move(why));
}

// `return fail(ErrorKind::kConflict, "...");`
inline Error fail(ErrorKind kind, std::string why) {
  return Error(std::move(why), kind);
}

// "internal", "invalid", "not_found", "conflict", "unavailable".
inline std::string_view kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalid:
      return "invalid";
    case ErrorKind::kNotFound:
      return "not_found";
    case ErrorKind::kConflict:
      return "conflict";
    case ErrorKind::kUnavailable:
      return "unavailable";
    case ErrorKind::kInternal:
      break;
  }
  return "internal";
}

}  // namespace tunnel::common
