// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice A router that attacks its caller's gas: `burn` loops until it runs out of gas,
/// `bomb` reverts with `size` bytes of revert data (a "revert bomb").
contract HostileRouter {
    uint256 public counter;

    function burn() external {
        while (true) {
            ++counter;
        }
    }

    function bomb(uint256 size) external pure {
        assembly {
            revert(0x80, size) // zeros from the free memory on
        }
    }
}
