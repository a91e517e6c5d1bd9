// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title BlackScholes
/// @notice Fixed-point (1e18, "wad") Black-Scholes delta for the vault's on-chain direction check.
/// @dev delta = N(d1) for a call, N(d1) - 1 for a put, d1 = (ln(S/K) + r tau) / s + s / 2,
/// s = vol sqrt(tau) (J. C. Hull, Options, Futures, and Other Derivatives, ch. 15, eq. 15.20 and
/// ch. 19; no dividends). N is Abramowitz & Stegun 26.2.17 (|error| < 7.5e-8). ln uses the
/// atanh series ln(m) = 2 atanh((m - 1)/(m + 1)) after a binary range reduction; exp uses
/// exp(x) = 2^k exp(r), |r| <= ln2 / 2, with a Taylor series for exp(r). Polynomials are
/// evaluated by Horner's rule, unrolled (no loop counters on the hot path).
library BlackScholes {
    int256 internal constant WAD = 1e18;
    uint256 internal constant SECONDS_PER_YEAR = 365 days; // ACT/365, as the keeper
    int256 private constant LN2 = 693_147_180_559_945_309; // ln 2, wad
    uint256 private constant SQRT_HALF = 707_106_781_186_547_524; // 1/sqrt 2, wad
    int256 private constant INV_SQRT_2PI = 398_942_280_401_432_678; // 1/sqrt(2 pi), wad
    int256 private constant CDF_CUTOFF = 9e18; // 1 - N(9) < 1.2e-19: N is 0 or 1 beyond
    int256 private constant EXP_MIN = -42e18; // exp(-42) < 1e-18

    // Abramowitz & Stegun 26.2.17, wad.
    int256 private constant P = 231_641_900_000_000_000;
    int256 private constant B1 = 319_381_530_000_000_000;
    int256 private constant B2 = -356_563_782_000_000_000;
    int256 private constant B3 = 1_781_477_937_000_000_000;
    int256 private constant B4 = -1_821_255_978_000_000_000;
    int256 private constant B5 = 1_330_274_429_000_000_000;

    /// @notice Delta of one option per unit of underlying, wad; 0 once expired.
    /// @param spot and strike in the same (oracle) decimals; volWad > 0; tau from `expiry - now`.
    function delta(uint256 spot, uint256 strike, uint256 secondsLeft, uint256 volWad, int256 rateWad, bool isCall)
        internal
        pure
        returns (int256)
    {
        if (secondsLeft == 0) return 0;
        int256 n = cdf(d1(spot, strike, secondsLeft, volWad, rateWad));
        return isCall ? n : n - WAD;
    }

    /// @notice d1 of Black-Scholes, wad.
    function d1(uint256 spot, uint256 strike, uint256 secondsLeft, uint256 volWad, int256 rateWad)
        internal
        pure
        returns (int256)
    {
        unchecked {
            // tau <= 2^40 s * 1e18 / year: no overflow; sqrt of tau * 1e18 is sqrt(tau) in wad.
            uint256 tau = secondsLeft * 1e18 / SECONDS_PER_YEAR;
            int256 s = int256(volWad * Math.sqrt(tau * 1e18) / 1e18);
            int256 logMoneyness = ln(spot * 1e18 / strike);
            return (logMoneyness * WAD + rateWad * int256(tau)) / s + s / 2;
        }
    }

    /// @notice Standard normal CDF, wad (Abramowitz & Stegun 26.2.17, |error| < 7.5e-8).
    function cdf(int256 x) internal pure returns (int256) {
        if (x >= CDF_CUTOFF) return WAD;
        if (x <= -CDF_CUTOFF) return 0;
        unchecked {
            int256 ax = x < 0 ? -x : x;
            int256 t = WAD * WAD / (WAD + P * ax / WAD);
            int256 poly = B4 + t * B5 / WAD;
            poly = B3 + t * poly / WAD;
            poly = B2 + t * poly / WAD;
            poly = B1 + t * poly / WAD;
            poly = t * poly / WAD;
            int256 pdf = INV_SQRT_2PI * exp(-(ax * ax / WAD) / 2) / WAD;
            int256 upper = pdf * poly / WAD; // 1 - N(|x|)
            return x < 0 ? upper : WAD - upper;
        }
    }

    /// @notice Natural logarithm of a positive wad, wad. Reverts on 0.
    /// @dev The series is cut after z^13/13: |z| <= 0.1716 leaves an error below 1e-11, and
    /// wherever N(d1) is not yet saturated (|ln(S/K)| < 9 s) far less relative to s.
    function ln(uint256 x) internal pure returns (int256) {
        require(x > 0, "ln(0)");
        unchecked {
            // x = m 2^k with m in [1/sqrt 2, sqrt 2); 2^59 <= 1e18 < 2^60.
            int256 k = int256(Math.log2(x)) - 59;
            uint256 m = k >= 0 ? x >> uint256(k) : x << uint256(-k);
            if (m < SQRT_HALF) {
                m <<= 1;
                k -= 1;
            }
            int256 z = (int256(m) - WAD) * WAD / (int256(m) + WAD);
            int256 z2 = z * z / WAD;
            // 2 atanh z = 2 z (1 + z2/3 + z2^2/5 + ... + z2^6/13), Horner.
            int256 h = 76_923_076_923_076_923; // 1/13
            h = 90_909_090_909_090_909 + z2 * h / WAD; // 1/11
            h = 111_111_111_111_111_111 + z2 * h / WAD; // 1/9
            h = 142_857_142_857_142_857 + z2 * h / WAD; // 1/7
            h = 200_000_000_000_000_000 + z2 * h / WAD; // 1/5
            h = 333_333_333_333_333_333 + z2 * h / WAD; // 1/3
            h = WAD + z2 * h / WAD;
            return k * LN2 + 2 * z * h / WAD;
        }
    }

    /// @notice e^x for a wad x <= 0, wad (0 below -42).
    function exp(int256 x) internal pure returns (int256) {
        require(x <= 0, "exp(x > 0)");
        if (x < EXP_MIN) return 0;
        unchecked {
            // x = k ln2 + r, |r| <= ln2 / 2; exp(r) by Taylor to r^9/9! (relative error < 1e-11).
            int256 k = (x - LN2 / 2) / LN2;
            int256 r = x - k * LN2;
            int256 h = 2_755_731_922_398; // 1/9!
            h = 24_801_587_301_587 + r * h / WAD; // 1/8!
            h = 198_412_698_412_698 + r * h / WAD; // 1/7!
            h = 1_388_888_888_888_889 + r * h / WAD; // 1/6!
            h = 8_333_333_333_333_333 + r * h / WAD; // 1/5!
            h = 41_666_666_666_666_667 + r * h / WAD; // 1/4!
            h = 166_666_666_666_666_667 + r * h / WAD; // 1/3!
            h = 500_000_000_000_000_000 + r * h / WAD; // 1/2!
            h = WAD + r * h / WAD;
            h = WAD + r * h / WAD;
            return h >> uint256(-k);
        }
    }
}
