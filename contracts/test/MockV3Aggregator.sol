// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice A Chainlink-compatible price feed whose rounds are set by its owner. Test and
/// local-world use only.
contract MockV3Aggregator is AggregatorV3Interface {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    error NotOwner(address caller);
    error NoSuchRound(uint80 roundId);
    error FeedBroken();

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    uint8 public immutable override decimals;
    string public override description;
    uint256 public constant override version = 4;
    address public owner;
    uint80 public latestRound;
    bool public broken;
    mapping(uint80 => Round) private _rounds;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(uint8 decimals_, int256 initialAnswer, string memory description_) {
        owner = msg.sender;
        decimals = decimals_;
        description = description_;
        _store(1, initialAnswer, block.timestamp);
    }

    /// @notice A new round with `answer`, updated now.
    function setAnswer(int256 answer) external onlyOwner {
        _store(latestRound + 1, answer, block.timestamp);
    }

    /// @notice An arbitrary latest round (stale, future, zero or negative answers).
    function setRound(uint80 roundId, int256 answer, uint256 updatedAt) external onlyOwner {
        _store(roundId, answer, updatedAt);
    }

    /// @notice Make every read revert (or stop doing so).
    function setBroken(bool value) external onlyOwner {
        broken = value;
    }

    function transferOwnership(address next) external onlyOwner {
        owner = next;
    }

    function latestAnswer() external view returns (int256) {
        if (broken) revert FeedBroken();
        return _rounds[latestRound].answer;
    }

    function getRoundData(uint80 roundId)
        external
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        if (broken) revert FeedBroken();
        Round memory r = _rounds[roundId];
        if (r.updatedAt == 0) revert NoSuchRound(roundId);
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        if (broken) revert FeedBroken();
        Round memory r = _rounds[latestRound];
        return (latestRound, r.answer, r.startedAt, r.updatedAt, latestRound);
    }

    function _store(uint80 roundId, int256 answer, uint256 updatedAt) private {
        latestRound = roundId;
        _rounds[roundId] = Round({answer: answer, startedAt: updatedAt, updatedAt: updatedAt});
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
