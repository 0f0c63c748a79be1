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
#pragma once

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <boost/outcome/success_failure.hpp>
#include <string>
#include <utility>

namespace tunnel::common {

struct Error {
  explicit Error(std::string why) : message(std::move(why)) {}
  std::string message;
  bool operator==(const Error&) const = default;
};

template <typename T>
using Result = boost::outcome_v2::basic_result<T, Error, boost::outcome_v2::policy::terminate>;

using Status = Result<void>;

// `return success();` from a function returning Status.
inline auto success() {
  return boost::outcome_v2::success();
}

// `return fail("...");` from a function returning any Result.
inline Error fail(std::string why) {
  return Error(std::move(why));
}

}  // namespace tunnel::common
