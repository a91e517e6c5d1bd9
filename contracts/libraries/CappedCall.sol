// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @title CappedCall
/// @notice A call with a gas cap whose revert data is copied only up to a fixed size, so that
/// neither a gas-burning callee nor a revert bomb (a huge revert string) can cost the caller
/// more than the cap plus a constant.
library CappedCall {
    /// @notice Revert data is truncated to this many bytes.
    uint256 internal constant MAX_REASON = 256;

    /// @notice Call `target` with `data` and at most `gasCap` gas; on failure return the first
    /// MAX_REASON bytes of the revert data. Return data of a success is not copied.
    function call(address target, bytes calldata data, uint256 gasCap)
        internal
        returns (bool ok, bytes memory reason)
    {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, data.offset, data.length)
            ok := call(gasCap, target, 0, ptr, data.length, 0, 0)
            if iszero(ok) {
                let size := returndatasize()
                if gt(size, MAX_REASON) { size := MAX_REASON }
                reason := ptr
                mstore(reason, size)
                returndatacopy(add(reason, 0x20), 0, size)
                mstore(0x40, add(add(reason, 0x20), and(add(size, 0x1f), not(0x1f))))
            }
        }
    }

    /// @notice `call` for data in memory.
    function callMemory(address target, bytes memory data, uint256 gasCap)
        internal
        returns (bool ok, bytes memory reason)
    {
        assembly ("memory-safe") {
            ok := call(gasCap, target, 0, add(data, 0x20), mload(data), 0, 0)
            if iszero(ok) {
                let size := returndatasize()
                if gt(size, MAX_REASON) { size := MAX_REASON }
                reason := mload(0x40)
                mstore(reason, size)
                returndatacopy(add(reason, 0x20), 0, size)
                mstore(0x40, add(add(reason, 0x20), and(add(size, 0x1f), not(0x1f))))
            }
        }
    }
}
