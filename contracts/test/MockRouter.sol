// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @notice A router that takes `pull` from the caller and pays `amountOut` from its own
/// balance, whatever the price. With a low `amountOut` it is the router that pays less than the
/// oracle bound; `pull` > the approval makes it try to take more than it was approved.
contract MockRouter {
    using SafeERC20 for IERC20;

    event Swapped(address indexed payer, uint256 pulled, uint256 paid);

    function swap(address tokenIn, address tokenOut, uint256 pull, uint256 amountOut, address recipient) external {
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), pull);
        IERC20(tokenOut).safeTransfer(recipient, amountOut);
        emit Swapped(msg.sender, pull, amountOut);
    }
}
