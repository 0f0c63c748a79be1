// Error codes carried on the wire in version 2 (RESET, GOAWAY) and used in logs and pages.
#pragma once

#include <cstdint>
#include <string_view>

namespace tunnel::protocol {

enum class ErrorCode : std::uint32_t {
  kNoError = 0,
  kProtocolError = 1,  // the peer broke the protocol (bad frame, bad sequence)
  kInternalError = 2,
  kFlowControlError = 3,  // the peer sent more than its credit
  kStreamClosed = 4,      // a frame arrived for a stream that is closed
  kFrameTooLarge = 5,
  kRefused = 6,           // the stream was refused before any processing (safe to retry)
  kCancel = 7,            // the stream is no longer needed
  kLocalUnreachable = 8,  // the agent could not connect to its local app
  kTimeout = 9,
  kAuthFailed = 10,
  kGoingAway = 11,   // the sender is shutting down
  kLocalError = 12,  // the local app broke the connection or sent an invalid response
};

std::string_view error_code_name(ErrorCode code);

}  // namespace tunnel::protocol
