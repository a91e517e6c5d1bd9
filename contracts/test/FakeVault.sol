// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IOptionsVault} from "../interfaces/IOptionsVault.sol";
import {ISettlement} from "../interfaces/ISettlement.sol";

/// @notice An attacker's "vault" slipped into a settlement: it says anyone is its keeper, gives
/// nothing, and (with `callTwice`) calls the settlement back a second time.
contract FakeVault {
    address public immutable quote;
    address public immutable underlying;
    bool public immutable callTwice;

    constructor(address quote_, address underlying_, bool callTwice_) {
        quote = quote_;
        underlying = underlying_;
        callTwice = callTwice_;
    }

    function isKeeper(address) external pure returns (bool) {
        return true;
    }

    function settle(IOptionsVault.Trade calldata, address, bytes calldata data) external returns (uint256) {
        ISettlement(msg.sender).onSettle(data);
        if (callTwice) ISettlement(msg.sender).onSettle(data);
        return 0;
    }
}
