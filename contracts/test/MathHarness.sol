// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {BlackScholes} from "../libraries/BlackScholes.sol";

/// @notice Exposes the BlackScholes library to the tests (compared with Python's floats).
contract MathHarness {
    function ln(uint256 x) external pure returns (int256) {
        return BlackScholes.ln(x);
    }

    function exp(int256 x) external pure returns (int256) {
        return BlackScholes.exp(x);
    }

    function cdf(int256 x) external pure returns (int256) {
        return BlackScholes.cdf(x);
    }

    function delta(uint256 spot, uint256 strike, uint256 secondsLeft, uint256 volWad, int256 rateWad, bool isCall)
        external
        pure
        returns (int256)
    {
        return BlackScholes.delta(spot, strike, secondsLeft, volWad, rateWad, isCall);
    }
}
