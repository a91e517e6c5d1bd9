// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {SafeTransfer} from "../libraries/SafeTransfer.sol";

/// @notice A router that takes `amountIn` from the caller and pays `amountOut` from its own
/// balance, whatever the price. With a low `amountOut` it is the router that pays less than the
/// oracle bound; `pull` > `amountIn` makes it try to take more than it was approved.
contract MockRouter {
    using SafeTransfer for address;

    event Swapped(address indexed payer, uint256 pulled, uint256 paid);

    function swap(address tokenIn, address tokenOut, uint256 pull, uint256 amountOut, address recipient) external {
        tokenIn.safeTransferFrom(msg.sender, address(this), pull);
        tokenOut.safeTransfer(recipient, amountOut);
        emit Swapped(msg.sender, pull, amountOut);
    }
}
