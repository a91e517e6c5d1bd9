// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {SafeTransfer} from "../libraries/SafeTransfer.sol";

interface IRebalance {
    function rebalance(
        bool sellUnderlying,
        uint256 amountIn,
        uint256 minOut,
        address router,
        bytes calldata swapData,
        uint256 deadline
    ) external returns (uint256);
}

/// @notice A hostile router that calls back into the vault's `rebalance` from inside the swap.
/// With `swallow` false it bubbles the inner revert; with `swallow` true it records the inner
/// revert data, then settles the swap honestly so the outer call can succeed.
contract ReentrantRouter {
    using SafeTransfer for address;

    bytes public lastInnerRevert;
    bool public innerSucceeded;

    function swap(
        address vault,
        address tokenIn,
        address tokenOut,
        uint256 amountIn,
        uint256 amountOut,
        bool swallow
    ) external {
        try IRebalance(vault).rebalance(true, amountIn, 0, address(this), "", type(uint256).max) {
            innerSucceeded = true;
        } catch (bytes memory reason) {
            if (!swallow) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
            lastInnerRevert = reason;
        }
        tokenIn.safeTransferFrom(msg.sender, address(this), amountIn);
        tokenOut.safeTransfer(msg.sender, amountOut);
    }
}
