// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice A price feed that answers like a Chainlink feed until `setBurning(true)`; then its
/// latestRoundData burns every unit of gas it is given.
contract GasBurningFeed {
    uint8 public constant decimals = 8;
    int256 public immutable answer;
    bool public burning;

    constructor(int256 answer_) {
        answer = answer_;
    }

    function setBurning(bool value) external {
        burning = value;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (burning) {
            uint256 x;
            while (true) {
                x = uint256(keccak256(abi.encode(x)));
            }
        }
        return (1, answer, block.timestamp, block.timestamp, 1);
    }
}
