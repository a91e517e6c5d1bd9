// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice ERC-20 calls that accept both tokens returning `true` and tokens returning nothing
/// (USDT style). Anything else (a revert, `false`, a call to an address without code) fails
/// with `TokenCallFailed(token, selector)`.
library SafeTransfer {
    error TokenCallFailed(address token, bytes4 selector);

    bytes4 private constant TRANSFER = 0xa9059cbb; // transfer(address,uint256)
    bytes4 private constant TRANSFER_FROM = 0x23b872dd; // transferFrom(address,address,uint256)
    bytes4 private constant APPROVE = 0x095ea7b3; // approve(address,uint256)

    function safeTransfer(address token, address to, uint256 amount) internal {
        _call(token, TRANSFER, abi.encodeWithSelector(TRANSFER, to, amount));
    }

    function safeTransferFrom(address token, address from, address to, uint256 amount) internal {
        _call(token, TRANSFER_FROM, abi.encodeWithSelector(TRANSFER_FROM, from, to, amount));
    }

    function safeApprove(address token, address spender, uint256 amount) internal {
        _call(token, APPROVE, abi.encodeWithSelector(APPROVE, spender, amount));
    }

    function _call(address token, bytes4 selector, bytes memory data) private {
        if (token.code.length == 0) revert TokenCallFailed(token, selector);
        (bool success, bytes memory ret) = token.call(data);
        // Success means: the call did not revert, and it returned nothing or an ABI-encoded true.
        if (!success) revert TokenCallFailed(token, selector);
        if (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1)) {
            revert TokenCallFailed(token, selector);
        }
    }
}
