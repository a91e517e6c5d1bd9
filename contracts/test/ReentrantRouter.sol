// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {IOptionsVault} from "../interfaces/IOptionsVault.sol";

/// @notice A hostile router that calls back into the vault's `rebalance` from inside the swap.
/// With `swallow` false it bubbles the inner revert; with `swallow` true it records the inner
/// revert data, then settles the swap honestly so the outer call can succeed.
contract ReentrantRouter {
    using SafeERC20 for IERC20;

    bytes public lastInnerRevert;
    bool public innerSucceeded;

    function swap(
        IOptionsVault vault,
        IOptionsVault.Trade calldata inner,
        address tokenIn,
        address tokenOut,
        uint256 amountIn,
        uint256 amountOut,
        bool swallow
    ) external {
        try vault.rebalance(inner, address(this), "") {
            innerSucceeded = true;
        } catch (bytes memory reason) {
            if (!swallow) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
            lastInnerRevert = reason;
        }
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), amountIn);
        IERC20(tokenOut).safeTransfer(msg.sender, amountOut);
    }
}
