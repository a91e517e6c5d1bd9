// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice The part of ERC-20 the vault uses. `transfer`, `transferFrom` and `approve` are
/// called through SafeTransfer so tokens that return no bool also work.
interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function allowance(address owner, address spender) external view returns (uint256);
    function decimals() external view returns (uint8);
}
