// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice The vault interface shared with the keeper (docs/interfaces.md). The struct
/// layouts are fixed: the keeper decodes them with eth-abi.
interface IOptionsVault {
    struct OptionLeg {
        uint256 strike; // oracle decimals
        uint64 expiry; // unix seconds
        int256 size; // underlying base units, negative = the vault wrote the option
        bool isCall;
    }

    struct VaultParams {
        uint256 impliedVolWad;
        int256 riskFreeRateWad;
        int256 targetDeltaWad;
        uint256 bandFloorWad;
        uint256 hardLimitWad;
        uint256 riskAversionWad;
        uint8 policy; // 0 gas-adjusted band, 1 fixed threshold, 2 time-based
        uint256 policyParam;
        uint16 maxSlippageBps;
        uint256 notionalCapPerWindow; // quote base units
        uint64 windowSeconds;
        uint64 oracleHeartbeat;
    }

    struct OracleRound {
        uint80 roundId;
        int256 answer;
        uint256 updatedAt;
        bool ok; // false when the feed call reverted or returned malformed data
    }

    struct VaultState {
        uint256 quoteBalance;
        uint256 underlyingBalance;
        VaultParams params;
        OptionLeg[] book;
        OracleRound oracle;
        uint8 oracleDecimals;
        bool paused;
        uint64 requestNonce;
        uint64 paramsVersion;
        uint64 lastRebalanceAt;
        uint256 windowNotionalUsed;
        uint64 windowStart;
    }

    event RebalanceRequested(uint64 indexed nonce, address indexed by);
    event ParamsUpdated(uint64 indexed version);
    event OptionWritten(uint256 indexed index, uint256 strike, uint64 expiry, int256 size, bool isCall);
    event OptionRemoved(uint256 indexed index);
    event Rebalanced(address indexed caller, bool sellUnderlying, uint256 amountIn, uint256 amountOut, address router);
    event KeeperSet(address indexed who, bool allowed);
    event RouterSet(address indexed router, bool allowed);
    event Paused(address by);
    event Unpaused(address by);

    function getState() external view returns (VaultState memory);

    function rebalance(
        bool sellUnderlying,
        uint256 amountIn,
        uint256 minOut,
        address router,
        bytes calldata swapData,
        uint256 deadline
    ) external returns (uint256 amountOut);

    function writeOption(OptionLeg calldata leg) external returns (uint256 index);
    function removeOption(uint256 index) external;
    function setParams(VaultParams calldata p) external;
    function setKeeper(address who, bool allowed) external;
    function setRouter(address router, bool allowed) external;
    function requestRebalance() external;
    function pause() external;
    function unpause() external;
    function transferGovernance(address next) external;

    function governance() external view returns (address);
    function quote() external view returns (address);
    function underlying() external view returns (address);
    function feed() external view returns (address);
    function isKeeper(address who) external view returns (bool);
    function isRouter(address who) external view returns (bool);
}
