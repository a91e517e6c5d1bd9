// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IOptionsVault} from "./interfaces/IOptionsVault.sol";

/// @title RebalanceBatcher
/// @notice Sends several vault rebalances in one transaction. Each leg runs on its own: a leg
/// that reverts is reported with its raw revert data in `LegFailed` and the others go on.
/// The batcher must be registered as a keeper on every vault it rebalances.
contract RebalanceBatcher {
    struct Leg {
        address vault;
        bool sellUnderlying;
        uint256 amountIn;
        uint256 minOut;
        address router;
        bytes swapData;
    }

    error NotOwner(address caller);
    error NotOperator(address caller);
    error ZeroAddress();
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error Reentrancy();
    /// @dev Reported (not thrown) as the LegFailed reason of a leg whose vault has no code or
    /// answered with data that is not a uint256.
    error BadVaultResponse(address vault);

    event LegExecuted(uint256 indexed index, address indexed vault, uint256 amountOut);
    event LegFailed(uint256 indexed index, address indexed vault, bytes reason);
    event OperatorSet(address indexed who, bool allowed);
    event OwnershipTransferred(address indexed previous, address indexed next);

    address public owner;
    mapping(address => bool) public isOperator;
    uint256 private _lock = 1;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(address owner_) {
        if (owner_ == address(0)) revert ZeroAddress();
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
    }

    function setOperator(address who, bool allowed) external onlyOwner {
        if (who == address(0)) revert ZeroAddress();
        isOperator[who] = allowed;
        emit OperatorSet(who, allowed);
    }

    function transferOwnership(address next) external onlyOwner {
        if (next == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, next);
        owner = next;
    }

    /// @notice Rebalance every leg; `ok[i]` says whether leg i succeeded.
    function execute(Leg[] calldata legs, uint256 deadline) external nonReentrant returns (bool[] memory ok) {
        if (!isOperator[msg.sender]) revert NotOperator(msg.sender);
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
        ok = new bool[](legs.length);
        for (uint256 i = 0; i < legs.length; ++i) {
            ok[i] = _executeLeg(i, legs[i], deadline);
        }
    }

    /// @dev A low-level call rather than try/catch: try/catch would let a vault without code, or
    /// one returning undecodable data, revert the whole batch.
    function _executeLeg(uint256 index, Leg calldata leg, uint256 deadline) private returns (bool) {
        bytes memory data = abi.encodeCall(
            IOptionsVault.rebalance,
            (leg.sellUnderlying, leg.amountIn, leg.minOut, leg.router, leg.swapData, deadline)
        );
        (bool success, bytes memory ret) = leg.vault.call(data);
        if (!success) {
            emit LegFailed(index, leg.vault, ret);
            return false;
        }
        if (ret.length != 32 || leg.vault.code.length == 0) {
            emit LegFailed(index, leg.vault, abi.encodeWithSelector(BadVaultResponse.selector, leg.vault));
            return false;
        }
        emit LegExecuted(index, leg.vault, abi.decode(ret, (uint256)));
        return true;
    }
}
