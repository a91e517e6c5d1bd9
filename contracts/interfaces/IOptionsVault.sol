// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @notice OptionsVault v2, the interface shared with the keeper (docs/interfaces.md is the
/// prose; this file is the source of truth). The keeper reads every selector, topic, error and
/// struct layout from the compiled ABI of this interface (keeper/contracts/abi/), never from
/// hand-copied signature strings.
interface IOptionsVault {
    struct OptionLeg {
        uint256 strike; // oracle decimals
        uint64 expiry; // unix seconds
        int256 size; // underlying base units, negative = the vault wrote the option
        bool isCall;
    }

    /// @notice The hedging policy the keeper follows. Changes apply at once (they bump
    /// paramsVersion and stateNonce). targetDeltaWad and hardLimitWad are also used on chain
    /// (direction check, corrective reserve).
    struct VaultParams {
        uint256 impliedVolWad; // 0.8e18 = 80% annualised
        int256 riskFreeRateWad; // 0.05e18 = 5% per year, continuous
        int256 targetDeltaWad; // target net delta (options + hedge), underlying units
        uint256 bandFloorWad; // governance floor of the band half-width, underlying units
        uint256 hardLimitWad; // |deviation| beyond which a rebalance is urgent, underlying units
        uint256 riskAversionWad; // mean-variance risk aversion, per quote unit, wad
        uint8 policy; // 0 gas-adjusted band, 1 fixed threshold, 2 time-based
        uint256 policyParam; // policy 1: threshold (wad); policy 2: interval (seconds)
    }

    /// @notice What bounds any keeper key, honest or compromised. Tightening applies at once;
    /// loosening any field is queued for `guardDelay` seconds (proposeGuards / applyGuards).
    /// Every field is also bounded by a hard ceiling fixed in the vault's code.
    struct Guards {
        uint16 maxSlippageBps; // oracle bound of every trade
        uint256 notionalCap; // token bucket of traded notional, quote units, refills over windowSeconds
        uint256 lossBudget; // token bucket of loss (oracle value given - received), quote units
        uint64 windowSeconds; // time for either bucket to refill from empty to full
        uint256 maxTradeNotional; // per-trade cap, quote units (oracle value of what is given)
        uint16 correctiveReserveBps; // share of notionalCap only trades from |dev| >= hardLimit may use
        uint256 maxOvershootWad; // how far past the target a trade may leave the deviation
        uint64 oracleHeartbeat; // seconds; older rounds are stale
    }

    struct OracleRound {
        uint80 roundId;
        int256 answer;
        uint256 updatedAt;
        bool ok; // false when the feed call reverted, ran out of its gas stipend or was malformed
    }

    struct VaultState {
        uint256 quoteBalance;
        uint256 underlyingBalance;
        uint8 quoteDecimals;
        uint8 underlyingDecimals;
        uint8 oracleDecimals;
        VaultParams params;
        Guards guards;
        OptionLeg[] book;
        OracleRound oracle;
        bool paused;
        uint64 stateNonce; // ++ on every trade, deposit, withdrawal and params/guards/book change
        uint64 requestNonce; // ++ on every requestRebalance()
        uint64 paramsVersion; // ++ on every governance change of params, guards or book
        uint64 lastRebalanceAt; // timestamp of the last successful trade
        uint256 notionalAvailable; // notional bucket level now (refill applied), quote units
        uint256 lossAvailable; // loss bucket level now (refill applied), quote units
    }

    /// @notice The part of VaultState that moves from block to block, and the hash of the part
    /// that only governance changes (params, guards, book; the decimals are immutable): a
    /// keeper that read getState() when the vault's configHash was h merges these fields into
    /// it for as long as configHash stays h, and reads getState() again when it changes.
    struct HotState {
        uint256 quoteBalance;
        uint256 underlyingBalance;
        OracleRound oracle;
        bool paused;
        uint64 stateNonce;
        uint64 requestNonce;
        uint64 paramsVersion;
        uint64 lastRebalanceAt;
        uint256 notionalAvailable;
        uint256 lossAvailable;
        bytes32 configHash; // keccak256(abi.encode(params, guards, book)), set on every change
    }

    /// @notice One trade of one vault. The vault gives exactly `amountIn` of the token it sells
    /// and must receive at least max(minOut, oracle bound); it reverts with StaleState unless its
    /// stateNonce still equals `expectedStateNonce` (compare-and-swap: a re-broadcast or re-mined
    /// stale trade reverts harmlessly).
    struct Trade {
        bool sellUnderlying;
        uint256 amountIn;
        uint256 minOut;
        uint64 expectedStateNonce;
        uint256 deadline;
    }

    // --- events (every governance change has one, with indexed fields) -----------------------

    event RebalanceRequested(uint64 indexed nonce, address indexed by);
    event ParamsUpdated(uint64 indexed version);
    event GuardsProposed(uint64 indexed version, uint256 eta, bool loosens);
    event GuardsApplied(uint64 indexed version);
    event GuardsCancelled(uint64 indexed version);
    event OptionWritten(uint256 indexed index, uint256 strike, uint64 expiry, int256 size, bool isCall);
    event OptionRemoved(uint256 indexed index);
    event Traded(
        address indexed keeper,
        address indexed via, // the router (rebalance) or the settlement contract (settle)
        uint64 indexed stateNonce, // the nonce after the trade
        bool sellUnderlying,
        uint256 amountIn,
        uint256 amountOut,
        uint256 loss // quote units charged to the loss budget
    );
    event KeeperSet(address indexed who, bool allowed);
    event RouterSet(address indexed router, bool allowed);
    event SettlementSet(address indexed settlement, bool allowed);
    event GuardianSet(address indexed previous, address indexed next);
    /// @dev Alongside OpenZeppelin's Paused/Unpaused(account), whose account is not indexed.
    event PauseChanged(address indexed by, bool paused);
    event Deposited(address indexed token, address indexed from, uint256 amount);
    event Withdrawn(address indexed token, address indexed to, uint256 amount);

    // --- errors (the keeper decodes them from the ABI) ---------------------------------------

    error NotKeeper(address caller);
    error NotSettlement(address caller);
    error NotGuardian(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error StaleState(uint64 expected, uint64 actual);
    error RouterNotAllowed(address router);
    error AmountTooLarge(uint256 amountIn, uint256 max);
    error OracleCallFailed(address feed);
    error OracleNonPositive(int256 answer);
    error OracleAnswerTooLarge(int256 answer);
    error OracleStale(uint256 updatedAt, uint64 heartbeat, uint256 timestamp);
    error OracleFromFuture(uint256 updatedAt, uint256 timestamp);
    error TradeTooLarge(uint256 notional, uint256 max);
    error NotionalCapExceeded(uint256 available, uint256 requested);
    error LossBudgetExceeded(uint256 available, uint256 loss);
    /// @dev A trade passes if |deviationAfter| <= maxOvershootWad, or if it moves toward the
    /// target without crossing it; else Overshoot (crossed or started on target) or
    /// WrongDirection (same side, not closer).
    error WrongDirection(int256 deviationBefore, int256 deviationAfter);
    error Overshoot(int256 deviationAfter, uint256 maxOvershoot);
    error SwapFailed(bytes reason); // reason truncated to 256 bytes
    error InsufficientOutput(uint256 received, uint256 required);
    error Overspent(uint256 spent, uint256 amountIn);
    error IndexOutOfRange(uint256 index, uint256 length);
    error InvalidOption();
    error InvalidParams(string field);
    error AboveCeiling(string field, uint256 value, uint256 ceiling);
    error GuardsNotReady(uint256 eta, uint256 timestamp);
    error NoPendingGuards();
    error InvalidDecimals(uint8 decimals);

    // --- views ---------------------------------------------------------------------------------

    /// @notice Everything a keeper needs in one call; never reverts because of the feed.
    function getState() external view returns (VaultState memory);
    /// @notice getState()'s fields that move between governance changes, and configHash, the
    /// hash of those that do not (a fraction of getState()'s gas and bytes).
    function getHotState() external view returns (HotState memory);
    /// @notice The book's Black-Scholes delta at the oracle price and implied vol, wad
    /// (underlying units). Reverts like a trade would on a bad oracle round.
    function optionsDeltaWad() external view returns (int256);
    /// @notice optionsDelta + underlying held - target, wad: what the direction check uses.
    function deviationWad() external view returns (int256);

    function quote() external view returns (address);
    function underlying() external view returns (address);
    function feed() external view returns (address);
    function guardian() external view returns (address);
    function guardDelay() external view returns (uint64);
    function isKeeper(address who) external view returns (bool);
    function isRouter(address who) external view returns (bool);
    function isSettlement(address who) external view returns (bool);

    // --- keeper ---------------------------------------------------------------------------------

    /// @notice A single vault's trade through an allowlisted router (exact approve, reset only
    /// when non-zero, gas-capped router call). Only a keeper.
    function rebalance(Trade calldata trade, address router, bytes calldata swapData)
        external
        returns (uint256 amountOut);

    /// @notice The vault's side of a netted settlement. Only an allowlisted settlement contract,
    /// on behalf of `keeper`, who must be a keeper of this vault. The vault transfers
    /// `trade.amountIn` to the caller, calls `ISettlement(caller).onSettle(data)`, and after it
    /// returns checks, in its own code, what it received (oracle bound, loss budget, direction).
    function settle(Trade calldata trade, address keeper, bytes calldata data) external returns (uint256 amountOut);

    // --- governance (owner, two-step ownership) and guardian ------------------------------------

    function writeOption(OptionLeg calldata leg) external returns (uint256 index);
    function removeOption(uint256 index) external;
    function setParams(VaultParams calldata p) external;
    /// @notice Tighter (or equal) in every field: applied now, returns 0. Looser in any field:
    /// queued, returns the time from which applyGuards() may apply it.
    function proposeGuards(Guards calldata g) external returns (uint256 eta);
    function applyGuards() external;
    function cancelGuards() external;
    function setKeeper(address who, bool allowed) external;
    function setRouter(address router, bool allowed) external;
    function setSettlement(address settlement, bool allowed) external;
    function setGuardian(address next) external;
    function requestRebalance() external;
    /// @notice Owner or guardian. The guardian can pause, never unpause, withdraw or change anything.
    function pause() external;
    function unpause() external;
    function deposit(address token, uint256 amount) external;
    function withdraw(address token, address to, uint256 amount) external;
}
